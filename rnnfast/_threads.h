/* The thread policy of rnnfast's compiled kernels: how many OpenMP threads a step may use.
 *
 * OpenMP's count (OMP_NUM_THREADS, threadpoolctl) is the most a product may use, and only
 * products of at least RF_THREADS_MIN_WORK multiply-adds use more than one (see _simd.h).
 * A step shared between threads ends at a barrier, so a step is as slow as its slowest
 * thread. On a machine where anything else runs, a thread that the OS has descheduled
 * holds the barrier for the rest of a time slice (milliseconds, where a step takes tens of
 * microseconds): with one of two cores busy, a default-threaded forward ran 3x slower on
 * the median and up to 100x on single calls than on one thread. And two calls in flight
 * at once each start a team of their own: four threads on two cores. So by default
 * ("adaptive") a step uses one thread
 *   - while another rnnfast call is in flight in the process (calls then run side by
 *     side, each on a core of its own), and for 50 ms after, and
 *   - for a while after a shared region found a thread late: the team's threads share
 *     equal work, and the last one finished more than twice the fastest one's work (plus
 *     150 us) after the first. That while starts at 10 ms and doubles, up to 1 s, each
 *     time the next shared region (the probe) is late again; after 2 s without a late
 *     region it starts at 10 ms again. At its end, a look at the run queue first
 *     (rf_cores_taken): while other processes' threads take the cores, steps stay solo
 *     for another 10 ms, not probing, as a probe then costs a time slice (one core busy,
 *     bench/contention.py's digits-eval: 7-8 late regions and a p90 of 1.47-1.83x its
 *     1-thread time without the look; one late region and 1.05x with it).
 * A shared region after more than 20 ms without one finds OpenMP's worker asleep ("cold"):
 * waking it took 1-4 ms on a virtual machine whose host had other work (a 3.5 ms call then
 * took 4-13 ms at 2 threads). Such a late region says nothing about the cores' load (the
 * worker, once awake, keeps up: no back-off), but for 10 s after it, calls that start cold
 * after a pause of 20 ms without a call and have fewer than 2^31 multiply-adds run on one
 * thread (a call right after another shares: see rf_cold_call_solo): there a cold medium LSTM
 * forward (1.3e9, 14 ms at 1 thread) took a median 0.73x and a p90 0.63x of its 1-thread
 * speed at 2 threads, a cold large GRU forward (1.5e10) 1.64-1.75x. (Not ended early by a
 * cold region on time: wake-ups there were slow at times, quick at others.)
 * "static" keeps OpenMP's count for every large step (a dedicated machine, benchmarks).
 * The split never changes a result: every value is computed by one thread, in the same
 * order, whatever the count (tests/test_threads.py). */
#ifndef RNNFAST_THREADS_H
#define RNNFAST_THREADS_H

#include <stdint.h>
#include <time.h>
#ifdef __linux__
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#endif

#ifdef _OPENMP
#include <omp.h>
static inline int rf_max_threads(void) { return omp_get_max_threads(); }
static inline int rf_thread_num(void) { return omp_get_thread_num(); }
#else
static inline int rf_max_threads(void) { return 1; }
static inline int rf_thread_num(void) { return 0; }
#endif

enum { RF_POLICY_ADAPTIVE = 0, RF_POLICY_STATIC = 1 };
#define RF_LATE_SLACK_NS 150000LL          /* 150 us: see rf_team_end */
#define RF_BACKOFF_MIN_NS 10000000LL       /* 10 ms */
#define RF_BACKOFF_MAX_NS 1000000000LL     /* 1 s */
#define RF_CONCURRENT_HOLD_NS 50000000LL   /* 50 ms solo after calls overlapped */
#define RF_CALM_NS 2000000000LL            /* 2 s without a late region: back-off anew */
#define RF_TEAM_MAX 64                     /* threads whose finish times a region records */
#define RF_COLD_NS 20000000LL              /* 20 ms without a shared region: the worker sleeps */
#define RF_COLD_MEMORY_NS 10000000000LL    /* 10 s: a slow wake-up remembered */
#define RF_COLD_SOLO_WORK (1LL << 31)      /* multiply-adds: smaller cold calls run solo then */

/* Process-wide state, read and written with relaxed atomics (a stale value costs at most
 * one step at the other thread count, never a different result). */
static int rf_policy = RF_POLICY_ADAPTIVE;
static int rf_calls_in_flight = 0;
static int64_t rf_solo_until_ns = 0;       /* steps use one thread until then */
static int64_t rf_backoff_ns = RF_BACKOFF_MIN_NS;
static int64_t rf_last_late_ns = 0;        /* when a region was last found late */
static int64_t rf_last_spread_ns = 0;      /* the last late region's spread and fastest share */
static int64_t rf_last_fastest_ns = 0;
static int64_t rf_late_regions = 0;        /* shared regions found late, for reports */
static int64_t rf_last_region_ns = 0;      /* when the last shared region ended */
static int64_t rf_cold_slow_until_ns = 0;  /* small cold calls run solo until then */
static int64_t rf_cold_late_regions = 0;   /* cold regions found late, for reports */
static int64_t rf_last_call_end_ns = 0;    /* when the last call ended (2+ threads) */
/* small pairs (see rf_small_pair_shares): one after the other until then, the back-off */
/* (1: as at a back-off's end, the first small pair looks at the run queue first) */
static int64_t rf_small_pairs_solo_until_ns = 1;
static int64_t rf_small_pairs_backoff_ns = RF_BACKOFF_MIN_NS;
static int64_t rf_small_pairs_last_late_ns = 0;
static int64_t rf_small_pairs_late = 0;    /* small pairs found late, for reports */
static int64_t rf_small_pairs_gain_ns = 0; /* running mean of what side by side saved */
static int64_t rf_small_pairs_fs_per_work = 0; /* a direction's time per multiply-add, fs */

static inline int64_t rf_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void rf_set_policy(int policy) {
    __atomic_store_n(&rf_policy, policy, __ATOMIC_RELAXED);
}
static inline int rf_get_policy(void) { return __atomic_load_n(&rf_policy, __ATOMIC_RELAXED); }
static inline int rf_get_calls_in_flight(void) {
    return __atomic_load_n(&rf_calls_in_flight, __ATOMIC_RELAXED);
}
static inline long long rf_get_late_regions(void) {
    return __atomic_load_n(&rf_late_regions, __ATOMIC_RELAXED);
}
static inline long long rf_get_cold_late_regions(void) {
    return __atomic_load_n(&rf_cold_late_regions, __ATOMIC_RELAXED);
}

/* Every kernel call (forward or backward) is counted while it runs. */
static inline void rf_call_begin(void) {
    __atomic_add_fetch(&rf_calls_in_flight, 1, __ATOMIC_RELAXED);
}
static inline void rf_call_end(void) {
    __atomic_sub_fetch(&rf_calls_in_flight, 1, __ATOMIC_RELAXED);
    if (rf_max_threads() > 1)   /* (see rf_cold_call_solo) */
        __atomic_store_n(&rf_last_call_end_ns, rf_now_ns(), __ATOMIC_RELAXED);
}

/* Steps use one thread for the next `ns` nanoseconds (0: from now on, as OpenMP says);
 * the tests simulate a late thread so. */
static inline void rf_go_solo_for(long long ns) {
    __atomic_store_n(&rf_solo_until_ns, ns > 0 ? rf_now_ns() + ns : 0, __ATOMIC_RELAXED);
    __atomic_store_n(&rf_backoff_ns, RF_BACKOFF_MIN_NS, __ATOMIC_RELAXED);
    if (ns <= 0) {              /* (a clean slate: cold calls and small pairs share again) */
        __atomic_store_n(&rf_cold_slow_until_ns, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&rf_small_pairs_solo_until_ns, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&rf_small_pairs_backoff_ns, RF_BACKOFF_MIN_NS, __ATOMIC_RELAXED);
        __atomic_store_n(&rf_small_pairs_gain_ns, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&rf_small_pairs_fs_per_work, 0, __ATOMIC_RELAXED);
    }
}

/* Whether threads outside this process now run on the cores a team of `team` threads
 * would need: Linux's count of runnable threads (/proc/loadavg's fourth field,
 * "running/total"), less this process's own running ones (state R in
 * /proc/self/task/<tid>/stat: the reader, and OpenMP's or BLAS's workers still spinning),
 * plus `team`, above the CPUs this process may run on. ~30 us; only at a back-off's end.
 * Elsewhere, or if a file cannot be read: no. */
static inline int rf_cores_taken(int team) {
#ifdef __linux__
    char text[256];
    int fd = open("/proc/loadavg", O_RDONLY);
    if (fd < 0) return 0;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) return 0;
    text[n] = 0;
    const char* field = text;
    for (int spaces = 0; *field && spaces < 3; field++) spaces += *field == ' ';
    long running = 0;
    while (*field >= '0' && *field <= '9') running = running * 10 + (*field++ - '0');
    if (*field != '/') return 0;
    DIR* tasks = opendir("/proc/self/task");
    if (tasks == NULL) return 0;
    long own = 0;
    for (struct dirent* entry; (entry = readdir(tasks)) != NULL;) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
        char path[64];
        snprintf(path, sizeof path, "/proc/self/task/%.20s/stat", entry->d_name);
        fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        n = read(fd, text, sizeof text - 1);
        close(fd);
        if (n <= 0) continue;
        text[n] = 0;
        const char* name_end = strrchr(text, ')');   /* (a thread's name may hold ')') */
        own += name_end != NULL && name_end[1] == ' ' && name_end[2] == 'R';
    }
    closedir(tasks);
    cpu_set_t allowed;
    const long cpus = sched_getaffinity(0, sizeof allowed, &allowed) == 0
                      ? CPU_COUNT(&allowed) : sysconf(_SC_NPROCESSORS_ONLN);
    return running - own + team > cpus;
#else
    (void) team;
    return 0;
#endif
}

/* Threads a step (or a product run once per call) may use now: OpenMP's count, or 1 under
 * the adaptive policy while another call is in flight or after a late thread. */
static inline int rf_team_threads(void) {
    const int most = rf_max_threads();
    if (most <= 1 || rf_get_policy() == RF_POLICY_STATIC) return most;
    const int64_t now = rf_now_ns();
    if (rf_get_calls_in_flight() > 1) {
        /* and for a while after: between two calls of a thread pool's stream the count is 1
         * for a moment, and a step shared then leaves OpenMP's worker spinning for
         * milliseconds on the core the other call runs on (two Python threads on one eval
         * LSTM(64, 128): 1.2x one thread's throughput so, 1.8x with OMP_NUM_THREADS=1) */
        __atomic_store_n(&rf_solo_until_ns, now + RF_CONCURRENT_HOLD_NS, __ATOMIC_RELAXED);
        return 1;
    }
    const int64_t until = __atomic_load_n(&rf_solo_until_ns, __ATOMIC_RELAXED);
    if (now < until) return 1;
    if (until != 0) {
        /* a back-off's end: while threads of other processes take the cores, the next
         * shared region (the probe) would be late again and cost a time slice (4-7 ms,
         * against steps of tens of us); so steps stay solo for the shortest back-off
         * (the next look) without a probe, and the back-off does not grow */
        if (rf_cores_taken(most)) {
            __atomic_store_n(&rf_solo_until_ns, now + RF_BACKOFF_MIN_NS, __ATOMIC_RELAXED);
            return 1;
        }
        __atomic_store_n(&rf_solo_until_ns, 0, __ATOMIC_RELAXED);
    }
    return most;
}

/* Whether a call of `work` multiply-adds starting now runs on one thread because it starts
 * cold (see the top) on a machine where cold wake-ups were found slow, and after a pause:
 * a call that follows another at once shares (a stream of calls pays one wake-up, not the
 * 1-thread time of every call; solo calls leave the worker asleep). */
static inline int rf_cold_call_solo(long long work) {
    if (work >= RF_COLD_SOLO_WORK || rf_max_threads() <= 1
            || rf_get_policy() == RF_POLICY_STATIC) return 0;
    const int64_t now = rf_now_ns();
    return now - __atomic_load_n(&rf_last_region_ns, __ATOMIC_RELAXED) > RF_COLD_NS
           && now - __atomic_load_n(&rf_last_call_end_ns, __ATOMIC_RELAXED) > RF_COLD_NS
           && now < __atomic_load_n(&rf_cold_slow_until_ns, __ATOMIC_RELAXED);
}
static inline int rf_cold_wakeups_slow(void) {
    return rf_now_ns() < __atomic_load_n(&rf_cold_slow_until_ns, __ATOMIC_RELAXED);
}

/* The timing of one shared region: when it started and when each thread finished, how
 * long after the last shared region it started, and whether that is cold. */
typedef struct {
    int64_t start_ns;
    int64_t done_ns[RF_TEAM_MAX];
    int threads;
    int cold;
    int64_t idle_ns;
} rf_team_timer;

static inline void rf_team_start(rf_team_timer* timer, int threads) {
    timer->threads = threads < RF_TEAM_MAX ? threads : RF_TEAM_MAX;
    for (int i = 0; i < timer->threads; i++) timer->done_ns[i] = 0;
    timer->start_ns = rf_now_ns();
    timer->idle_ns = timer->start_ns - __atomic_load_n(&rf_last_region_ns, __ATOMIC_RELAXED);
    timer->cold = timer->idle_ns > RF_COLD_NS;
}

/* Called by each thread of the region when its share is done. */
static inline void rf_team_done(rf_team_timer* timer) {
    const int i = rf_thread_num();
    if (i < timer->threads) timer->done_ns[i] = rf_now_ns();
}

/* After the region: was a thread late? The threads share equal work, so they should finish
 * together; when the last finished more than twice the fastest one's work (plus 150 us)
 * after the first, one of them was descheduled (possibly the calling thread): a thread the
 * OS set aside waits out a time slice, milliseconds. On an idle virtual machine the
 * worker's wake-up and the shares of a product streamed from L3 spread the finish times
 * by up to ~1.5x the fastest share (~0.4 ms in the large cells); with a bound of half the
 * fastest share plus 100 us they went solo there, losing their 2-thread speedup.
 * Then steps go solo for the back-off time, which doubles with every late probe and starts
 * afresh only after 2 s without one. (Shrinking it at every on-time region let the probes
 * that were lucky on a busy machine bring the stalls back: medium LSTM fwd+bwd 1.3-1.8x
 * its 1-thread p90 with a core busy.) */
static inline void rf_team_end(rf_team_timer* timer) {
    if (rf_get_policy() == RF_POLICY_STATIC || timer->threads < 2) return;
    int64_t first = INT64_MAX, last = 0;
    for (int i = 0; i < timer->threads; i++) {
        const int64_t t = timer->done_ns[i];
        if (t == 0) continue;                                   /* (did not report) */
        first = t < first ? t : first;
        last = t > last ? t : last;
    }
    if (last == 0) return;
    __atomic_store_n(&rf_last_region_ns, last, __ATOMIC_RELAXED);
    const int64_t fastest = first - timer->start_ns;
    const int late = last - first > 2 * fastest + RF_LATE_SLACK_NS;
    if (timer->cold) {          /* the worker's wake-up: remembered, no back-off (top) */
        if (late) {
            __atomic_store_n(&rf_cold_slow_until_ns, last + RF_COLD_MEMORY_NS,
                             __ATOMIC_RELAXED);
            __atomic_add_fetch(&rf_cold_late_regions, 1, __ATOMIC_RELAXED);
        }
        return;
    }
    if (late) {
        /* a late region after a calm spell starts the back-off afresh */
        const int64_t previous = __atomic_exchange_n(&rf_last_late_ns, last, __ATOMIC_RELAXED);
        int64_t backoff = last - previous > RF_CALM_NS
                          ? RF_BACKOFF_MIN_NS : __atomic_load_n(&rf_backoff_ns, __ATOMIC_RELAXED);
        __atomic_store_n(&rf_solo_until_ns, last + backoff, __ATOMIC_RELAXED);
        backoff = backoff * 2 < RF_BACKOFF_MAX_NS ? backoff * 2 : RF_BACKOFF_MAX_NS;
        __atomic_store_n(&rf_backoff_ns, backoff, __ATOMIC_RELAXED);
        __atomic_add_fetch(&rf_late_regions, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&rf_last_spread_ns, last - first, __ATOMIC_RELAXED);
        __atomic_store_n(&rf_last_fastest_ns, fastest, __ATOMIC_RELAXED);
    }
}
static inline long long rf_get_last_spread(void) { return rf_last_spread_ns; }

/* Small pairs: the two directions of a bidirectional layer whose calls are too small for
 * a wake-up of the second thread (tens of us on a virtual machine, more than such a call
 * takes: a tiny LSTM pair every 5 ms took 86-106 us side by side against 36-51 us one after
 * the other) but worth running side by side while that thread is awake (in a steady loop,
 * 1.4x at tiny LSTM and GRU). By default they run side by side only
 *   - warm: a shared region ended, or a call ended, within RF_PAIR_WARM_NS (OpenMP's worker
 *     still spins then; a stream of calls pays one wake-up, then finds it awake), and
 *   - while side by side pays: one after the other would take the two directions' own
 *     times, side by side took the region's; what it saved is judged against what the
 *     directions take on their own, their multiply-adds at the fastest time per
 *     multiply-add seen (a slowly rising minimum). Not against the faster thread's share:
 *     with another process on one core, the waiting worker competes with the calling
 *     thread, and at times both finished ~4 ms late, a pair that the shares judged fine;
 *     every call then took 6-7 ms for seconds, against 20 us on one thread.
 * Single pairs jitter, and the OS sets a thread aside now and then even on an idle machine
 * (in a steady tiny loop, ~3 pairs a second took 0.2-1 ms against ~10 us; judged one by
 * one, as rf_team_end judges large regions, each sent every call solo for a back-off,
 * doubling: 2-thread throughput then was 1.1x one thread's against 1.4x on the median). So
 * the verdict goes on a running mean of the saving (weight 1/16 to the newest pair, whose
 * loss counts at most twice the serial time): when it falls below zero, small pairs run one
 * after the other for a back-off that starts at 10 ms and doubles, up to 1 s, at each such
 * fall (afresh after 2 s without one), and the mean starts again from zero (so under
 * contention, where every pair is late, the first judged pair after a back-off decides).
 * The static policy keeps them one after the other (it changes only how large steps
 * share). */
#define RF_PAIR_WARM_NS 1000000LL          /* 1 ms */

static inline int rf_small_pair_shares(void) {
    if (rf_max_threads() <= 1 || rf_get_policy() == RF_POLICY_STATIC) return 0;
    const int64_t now = rf_now_ns();
    const int64_t until = __atomic_load_n(&rf_small_pairs_solo_until_ns, __ATOMIC_RELAXED);
    if (now < until) return 0;
    /* a back-off's end: probing with a pair while another thread runs costs a time slice
     * (4-7 ms, with a process spinning on one core); a look at the run queue costs ~10 us,
     * and while others run the pairs stay one after the other for the shortest back-off
     * (the next look), not doubling: they share again soon after the load ends */
    if (until != 0) {
        if (rf_cores_taken(2)) {
            __atomic_store_n(&rf_small_pairs_solo_until_ns, now + RF_BACKOFF_MIN_NS,
                             __ATOMIC_RELAXED);
            return 0;
        }
        __atomic_store_n(&rf_small_pairs_solo_until_ns, 0, __ATOMIC_RELAXED);
    }
    return now - __atomic_load_n(&rf_last_region_ns, __ATOMIC_RELAXED) < RF_PAIR_WARM_NS
           || now - __atomic_load_n(&rf_last_call_end_ns, __ATOMIC_RELAXED) < RF_PAIR_WARM_NS;
}

/* After a small pair's region (directions of work0 and work1 multiply-adds), in place of
 * rf_team_end: has side by side, over the recent pairs, been slower than one after the
 * other? Returns whether it has (and then starts a back-off). A pair that started over
 * RF_PAIR_WARM_NS after the last shared region (the first of a stream, or after a
 * back-off) may have woken the second thread: its loss counts only beyond RF_LATE_SLACK_NS
 * (judged in full, each back-off's first pair sent a stream solo again, and the back-off
 * doubled up to 1 s); one that started cold is judged as rf_team_end judges cold regions
 * (a slow wake-up is remembered). The first pair (and the first after _go_solo_for(0))
 * only sets the time per multiply-add. */
static inline int rf_small_pair_end(rf_team_timer* timer, int64_t work0, int64_t work1) {
    if (timer->threads != 2 || timer->done_ns[0] == 0 || timer->done_ns[1] == 0
        || work0 <= 0 || work1 <= 0) return 0;
    if (timer->cold) {
        rf_team_end(timer);
        return 0;
    }
    const int64_t t0 = timer->done_ns[0] - timer->start_ns;
    const int64_t t1 = timer->done_ns[1] - timer->start_ns;
    const int64_t elapsed = t0 > t1 ? t0 : t1;
    __atomic_store_n(&rf_last_region_ns, timer->start_ns + elapsed, __ATOMIC_RELAXED);
    /* the time per multiply-add: the faster thread's of this pair, or the minimum so far
     * rising by 1/64 a pair (the machine's clock changes; a stale minimum only judges
     * strictly) */
    const int64_t f0 = t0 * 1000000 / work0, f1 = t1 * 1000000 / work1;
    const int64_t observed = f0 < f1 ? f0 : f1;
    const int64_t fs = __atomic_load_n(&rf_small_pairs_fs_per_work, __ATOMIC_RELAXED);
    const int64_t risen = fs + fs / 64 + 1;
    __atomic_store_n(&rf_small_pairs_fs_per_work,
                     fs == 0 || observed < risen ? observed : risen, __ATOMIC_RELAXED);
    if (fs == 0) return 0;
    const int64_t serial = (work0 + work1) * fs / 1000000;
    int64_t saved = serial - elapsed;
    if (timer->idle_ns >= RF_PAIR_WARM_NS)
        saved = saved + RF_LATE_SLACK_NS < 0 ? saved + RF_LATE_SLACK_NS : 0;
    if (saved < -2 * serial) saved = -2 * serial;
    int64_t mean = __atomic_load_n(&rf_small_pairs_gain_ns, __ATOMIC_RELAXED);
    mean += (saved - mean) / 16;
    if (mean >= 0) {
        __atomic_store_n(&rf_small_pairs_gain_ns, mean, __ATOMIC_RELAXED);
        return 0;
    }
    __atomic_store_n(&rf_small_pairs_gain_ns, 0, __ATOMIC_RELAXED);
    const int64_t last = timer->start_ns + elapsed;
    const int64_t previous = __atomic_exchange_n(&rf_small_pairs_last_late_ns, last,
                                                 __ATOMIC_RELAXED);
    int64_t backoff = last - previous > RF_CALM_NS
                      ? RF_BACKOFF_MIN_NS
                      : __atomic_load_n(&rf_small_pairs_backoff_ns, __ATOMIC_RELAXED);
    __atomic_store_n(&rf_small_pairs_solo_until_ns, last + backoff, __ATOMIC_RELAXED);
    backoff = backoff * 2 < RF_BACKOFF_MAX_NS ? backoff * 2 : RF_BACKOFF_MAX_NS;
    __atomic_store_n(&rf_small_pairs_backoff_ns, backoff, __ATOMIC_RELAXED);
    __atomic_add_fetch(&rf_small_pairs_late, 1, __ATOMIC_RELAXED);
    return 1;
}
static inline long long rf_get_small_pairs_late(void) {
    return __atomic_load_n(&rf_small_pairs_late, __ATOMIC_RELAXED);
}
static inline long long rf_get_last_fastest(void) { return rf_last_fastest_ns; }

#endif
