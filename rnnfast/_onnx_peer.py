"""ONNX Runtime as a benchmark peer: a one-node ONNX graph (RNN, LSTM or GRU operator) with
an rnnfast layer's weights, run by onnxruntime's CPU provider (inference only: ONNX Runtime
does not train). Optional: ``pip install onnx onnxruntime``.

Gate orders: rnnfast's LSTM is i, f, g, o and ONNX's i, o, f, c; rnnfast's GRU is r, z, n
and ONNX's z, r, h, with ``linear_before_reset=1`` (PyTorch's and rnnfast's formulation:
the reset gate multiplies ``h @ Wh_n + b_hn``).
"""
import numpy as np

# rnnfast gate blocks in the order of ONNX's
_ONNX_ORDER = {"rnn": [0], "lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}


def _blocks(a, order, H, axis):
    return np.concatenate([np.take(a, range(k * H, (k + 1) * H), axis=axis) for k in order],
                          axis=axis)


def onnx_weights(kind, params, hidden_size):
    """``(W, R, B)`` of the ONNX operator for an rnnfast layer's params, float32/64 as
    given: W (1, G*H, D), R (1, G*H, H), B (1, 2*G*H) (input biases, then recurrent ones)."""
    H = hidden_size
    order = _ONNX_ORDER[kind]
    W = _blocks(params["Wx"], order, H, axis=1).T[None]
    R = _blocks(params["Wh"], order, H, axis=1).T[None]
    Wb = _blocks(params["b"], order, H, axis=0)
    Rb = np.zeros_like(Wb)
    if kind == "gru":                  # b_hn sits inside the reset product: ONNX's Rbh
        Rb[2 * H:] = params["b_hn"]
    return (np.ascontiguousarray(W), np.ascontiguousarray(R),
            np.concatenate([Wb, Rb])[None])


def session(kind, layer, threads=1):
    """An onnxruntime InferenceSession computing ``layer``'s forward, and a function
    ``run(x_tm) -> (out_tm, h_n)`` over it: x and out time-major, (seq, batch, features),
    the only layout ONNX Runtime's CPU kernels take (a benchmark hands it x so, prepared
    outside the timed call: the peer's best case)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    H, D = layer.hidden_size, layer.input_size
    dtype = np.dtype(layer.dtype)
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    W, R, B = onnx_weights(kind, layer.params, H)
    op = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[kind]
    attrs = {"hidden_size": H}       # layout 0 (time-major): ORT's CPU kernels have no other
    if kind == "gru":
        attrs["linear_before_reset"] = 1
    if kind == "rnn":
        attrs["activations"] = [{"tanh": "Tanh", "relu": "Relu",
                                 "sigmoid": "Sigmoid"}[layer.nonlinearity]]
    outputs = ["Y", "Y_h"] + (["Y_c"] if kind == "lstm" else [])
    node = helper.make_node(op, ["X", "W", "R", "B"], outputs, **attrs)
    graph = helper.make_graph(
        [node], f"rnnfast_{kind}",
        [helper.make_tensor_value_info("X", elem, ["seq", "batch", D])],
        [helper.make_tensor_value_info("Y", elem, ["seq", 1, "batch", H]),
         helper.make_tensor_value_info("Y_h", elem, [1, "batch", H])],
        initializer=[numpy_helper.from_array(W.astype(dtype), "W"),
                     numpy_helper.from_array(R.astype(dtype), "R"),
                     numpy_helper.from_array(B.astype(dtype), "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])

    def run(x):
        y, y_h = sess.run(["Y", "Y_h"], {"X": x})
        return y[:, 0], y_h[0]              # Y (seq, 1, batch, H), Y_h (1, batch, H)
    return sess, run
