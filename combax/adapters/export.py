"""ONNX export of pure JAX inference functions, and an onnxruntime forward pass to check it.

The exporter traces ``apply_fn(params, x)`` to a jaxpr and translates it primitive by primitive into an ONNX graph
built with :mod:`onnx.helper`. Why not the PyPI ``jax2onnx`` package: it pulls ~25 further packages and pins
``orbax-checkpoint`` below the version installed here, and a chain CNN or a CIFAR ResNet needs only a dozen primitives.

Two things make the graph fast as well as exact:

* **Constant folding.** The parameters are closed over, so every equation whose inputs are all constants (BN's
  ``scale * rsqrt(var + eps)``, broadcasts of biases, kernel reshapes) is evaluated at export time. Broadcasts of
  constants are kept *lazy* (rank-expanded with size-1 axes, never materialised to the activation's full shape).
* **Layout tracking.** JAX/Flax convolutions are NHWC, ONNX ``Conv`` is NCHW. Every tensor carries the permutation
  between its JAX (logical) axes and its ONNX (physical) axes; elementwise ops, reductions, pads and slices run in the
  physical layout with their constants and axes permuted, so a chain of convs needs a ``Transpose`` only at the input
  and wherever a ``reshape``/``dot_general`` needs the logical layout.

Supported primitives: ``conv_general_dilated`` (groups, strides, dilation, asymmetric padding), ``dot_general``,
elementwise ``add sub mul div max min neg exp log tanh logistic sqrt rsqrt abs integer_pow clamp``,
``reduce_sum reduce_max reduce_min``, ``reduce_window_max`` (max-pool in a conv layout), ``broadcast_in_dim reshape squeeze expand_dims transpose pad`` (negative pads
crop), ``slice concatenate convert_element_type``, and the call-like primitives (``jit``/``pjit``,
``custom_jvp_call``, ``custom_vjp_call``, ``closed_call``, ``remat``), which are inlined.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from combax._optional import require

__all__ = ["export_onnx", "onnx_forward"]

_INLINE = {"pjit", "jit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"}
_INLINE_PREFIX = ("remat", "checkpoint")
_BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min", "pow": "Pow"}
_UNARY = {
    "neg": "Neg",
    "exp": "Exp",
    "log": "Log",
    "tanh": "Tanh",
    "logistic": "Sigmoid",
    "sqrt": "Sqrt",
    "abs": "Abs",
    "floor": "Floor",
    "ceil": "Ceil",
}
_NP_BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "max": np.maximum,
    "min": np.minimum,
    "pow": np.power,
}
_NP_UNARY = {
    "neg": np.negative,
    "exp": np.exp,
    "log": np.log,
    "tanh": np.tanh,
    "logistic": lambda a: 1.0 / (1.0 + np.exp(-a)),
    "sqrt": np.sqrt,
    "rsqrt": lambda a: 1.0 / np.sqrt(a),
    "abs": np.abs,
    "floor": np.floor,
    "ceil": np.ceil,
}


@dataclass(slots=True)
class _Tensor:
    """A non-constant value: its ONNX name and ``perm`` with ``physical = transpose(logical, perm)``."""

    name: str
    perm: tuple[int, ...]
    shape: tuple[int, ...]  # logical shape


def _identity(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


class _Builder:
    def __init__(self, opset: int):
        self.onnx = require("onnx", "onnx", "ONNX export")
        self.helper = self.onnx.helper
        self.opset = opset
        self.nodes: list = []
        self.inits: list = []
        self._count = 0

    def fresh(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, value: np.ndarray, stem: str = "c") -> str:
        name = self.fresh(stem)
        self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], stem: str | None = None, **attrs) -> str:
        out = self.fresh(stem or op.lower())
        self.nodes.append(self.helper.make_node(op, inputs, [out], **attrs))
        return out

    # -- layout -----------------------------------------------------------------------------------------------
    def to_perm(self, t: _Tensor, perm: tuple[int, ...]) -> str:
        """The ONNX name of ``t`` laid out as ``transpose(logical, perm)``."""
        if t.perm == perm:
            return t.name
        rel = [t.perm.index(p) for p in perm]
        return self.node("Transpose", [t.name], perm=rel)

    def logical(self, t: _Tensor) -> str:
        return self.to_perm(t, _identity(len(t.shape)))

    def const_in(self, value: np.ndarray, perm: tuple[int, ...], stem: str = "c") -> str:
        """A constant (numpy-broadcastable to the logical shape) as an ONNX initializer in layout ``perm``."""
        value = np.asarray(value)
        if value.ndim == 0:
            return self.const(value, stem)
        return self.const(np.transpose(value, perm), stem)


def _literal_value(v) -> np.ndarray:
    return np.asarray(v.val, dtype=v.aval.dtype)


def _is_literal(v) -> bool:
    from jax.extend.core import Literal

    return isinstance(v, Literal)


def _sub_jaxpr(eqn):
    from jax.extend.core import ClosedJaxpr, Jaxpr

    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        sub = eqn.params.get(key)
        if isinstance(sub, ClosedJaxpr):
            return sub.jaxpr, list(sub.consts)
        if isinstance(sub, Jaxpr):
            return sub, []
    raise NotImplementedError(f"cannot inline primitive `{eqn.primitive.name}`: no sub-jaxpr found")


def _fold(eqn, vals: list[np.ndarray]) -> list[np.ndarray]:
    """Evaluate an equation whose inputs are all constants (lazy-broadcast numpy arrays)."""
    name = eqn.primitive.name
    out_aval = eqn.outvars[0].aval
    if name in _NP_BINARY:
        return [np.asarray(_NP_BINARY[name](vals[0], vals[1]), dtype=out_aval.dtype)]
    if name in _NP_UNARY:
        return [np.asarray(_NP_UNARY[name](vals[0]), dtype=out_aval.dtype)]
    if name == "integer_pow":
        return [np.asarray(vals[0] ** eqn.params["y"], dtype=out_aval.dtype)]
    if name == "convert_element_type":
        return [np.asarray(vals[0], dtype=out_aval.dtype)]
    if name == "broadcast_in_dim":
        shape, dims = eqn.params["shape"], eqn.params["broadcast_dimensions"]
        src = np.asarray(vals[0])
        new = [1] * len(shape)
        for k, d in enumerate(dims):
            new[d] = src.shape[k]
        return [src.reshape(new)]
    full = [np.broadcast_to(v, a.aval.shape) if np.ndim(v) else v for v, a in zip(vals, eqn.invars)]
    outs = eqn.primitive.bind(*full, **eqn.params)
    outs = outs if eqn.primitive.multiple_results else [outs]
    return [np.asarray(o) for o in outs]


class _Translator:
    def __init__(self, builder: _Builder):
        self.b = builder

    def run(self, jaxpr, consts, args) -> list:
        env: dict = {}

        def read(v):
            return _literal_value(v) if _is_literal(v) else env[v]

        for var, val in zip(jaxpr.constvars, consts):
            env[var] = np.asarray(val)
        for var, val in zip(jaxpr.invars, args):
            env[var] = val
        for eqn in jaxpr.eqns:
            ins = [read(v) for v in eqn.invars]
            name = eqn.primitive.name
            if name in _INLINE or name.startswith(_INLINE_PREFIX):
                sub, sub_consts = _sub_jaxpr(eqn)
                outs = self.run(sub, sub_consts, ins[len(ins) - len(sub.invars) :])
            elif all(not isinstance(v, _Tensor) for v in ins):
                outs = _fold(eqn, ins)
            else:
                handler = getattr(self, f"_p_{name}", None)
                if handler is None:
                    raise NotImplementedError(f"ONNX export does not support the JAX primitive `{name}`")
                outs = handler(eqn, ins)
                outs = outs if isinstance(outs, list) else [outs]
            for var, val in zip(eqn.outvars, outs):
                env[var] = val
        return [read(v) for v in jaxpr.outvars]

    # -- elementwise ------------------------------------------------------------------------------------------
    def _binary(self, eqn, ins, op: str):
        shape = tuple(eqn.outvars[0].aval.shape)
        tensors = [v for v in ins if isinstance(v, _Tensor)]
        perm = tensors[0].perm
        names = []
        for v in ins:
            if isinstance(v, _Tensor):
                names.append(self.b.to_perm(v, perm))
            else:
                val = np.asarray(v, dtype=eqn.outvars[0].aval.dtype)
                if val.ndim not in (0, len(shape)):
                    val = val.reshape((1,) * (len(shape) - val.ndim) + val.shape)
                names.append(self.b.const_in(val, perm))
        return _Tensor(self.b.node(op, names), perm, shape)

    def _unary(self, eqn, ins, op: str, **attrs):
        (t,) = ins
        return _Tensor(self.b.node(op, [t.name], **attrs), t.perm, tuple(eqn.outvars[0].aval.shape))

    def __getattr__(self, item: str):
        if item.startswith("_p_"):
            prim = item[3:]
            if prim in _BINARY:
                return lambda eqn, ins: self._binary(eqn, ins, _BINARY[prim])
            if prim in _UNARY:
                return lambda eqn, ins: self._unary(eqn, ins, _UNARY[prim])
        raise AttributeError(item)

    def _p_rsqrt(self, eqn, ins):
        (t,) = ins
        s = self.b.node("Sqrt", [t.name])
        one = self.b.const(np.asarray(1.0, dtype=eqn.outvars[0].aval.dtype))
        return _Tensor(self.b.node("Div", [one, s]), t.perm, t.shape)

    def _p_integer_pow(self, eqn, ins):
        (t,) = ins
        y = eqn.params["y"]
        if y == 2:
            return _Tensor(self.b.node("Mul", [t.name, t.name]), t.perm, t.shape)
        p = self.b.const(np.asarray(float(y), dtype=eqn.outvars[0].aval.dtype))
        return _Tensor(self.b.node("Pow", [t.name, p]), t.perm, t.shape)

    def _p_clamp(self, eqn, ins):
        lo, x, hi = ins
        if isinstance(x, _Tensor) and np.ndim(lo) == 0 and np.ndim(hi) == 0 and not isinstance(lo, _Tensor):
            dt = eqn.outvars[0].aval.dtype
            names = [x.name, self.b.const(np.asarray(lo, dt)), self.b.const(np.asarray(hi, dt))]
            return _Tensor(self.b.node("Clip", names), x.perm, x.shape)
        fake = type("E", (), {"outvars": eqn.outvars})
        t = self._binary(fake, [x, lo], "Max")
        return self._binary(fake, [t, hi], "Min")

    def _p_convert_element_type(self, eqn, ins):
        (t,) = ins
        dt = np.dtype(eqn.outvars[0].aval.dtype)
        if dt == np.dtype(eqn.invars[0].aval.dtype):
            return _Tensor(self.b.node("Identity", [t.name]), t.perm, t.shape)
        to = self.b.onnx.helper.np_dtype_to_tensor_dtype(dt)
        return _Tensor(self.b.node("Cast", [t.name], to=to), t.perm, t.shape)

    # -- convolution and products -----------------------------------------------------------------------------
    def _p_conv_general_dilated(self, eqn, ins):
        x, w = ins
        p = eqn.params
        if any(d != 1 for d in p["lhs_dilation"]) or p["batch_group_count"] != 1:
            raise NotImplementedError("ONNX export supports conv_general_dilated without lhs dilation or batch groups")
        dn = p["dimension_numbers"]
        lhs_spec, rhs_spec, out_spec = tuple(dn.lhs_spec), tuple(dn.rhs_spec), tuple(dn.out_spec)
        x_name = self.b.to_perm(x, lhs_spec)
        if isinstance(w, _Tensor):
            w_name = self.b.to_perm(w, rhs_spec)
        else:
            w_full = np.broadcast_to(w, eqn.invars[1].aval.shape)
            w_name = self.b.const(np.transpose(w_full, rhs_spec).astype(np.float32), "w")
        pads = [lo for lo, _ in p["padding"]] + [hi for _, hi in p["padding"]]
        if any(v < 0 for v in pads):
            raise NotImplementedError("ONNX export does not support negative convolution padding")
        k = eqn.invars[1].aval.shape
        kernel_shape = [k[d] for d in rhs_spec[2:]]
        out = self.b.node(
            "Conv",
            [x_name, w_name],
            kernel_shape=kernel_shape,
            strides=list(p["window_strides"]),
            pads=pads,
            dilations=list(p["rhs_dilation"]),
            group=int(p["feature_group_count"]),
        )
        return _Tensor(out, out_spec, tuple(eqn.outvars[0].aval.shape))

    def _p_dot_general(self, eqn, ins):
        a, b = ins
        (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
        a_rank, b_rank = len(eqn.invars[0].aval.shape), len(eqn.invars[1].aval.shape)
        out_shape = tuple(eqn.outvars[0].aval.shape)

        def name_of(v, i):
            if isinstance(v, _Tensor):
                return self.b.logical(v)
            return self.b.const(np.broadcast_to(v, eqn.invars[i].aval.shape).astype(eqn.invars[i].aval.dtype))

        an, bn = name_of(a, 0), name_of(b, 1)
        if not lb and b_rank == 2 and tuple(lc) == (a_rank - 1,) and tuple(rc) == (0,):
            return _Tensor(self.b.node("MatMul", [an, bn]), _identity(len(out_shape)), out_shape)
        letters = iter("abcdefghijklmnopqrstuvwxyz")
        sa = [next(letters) for _ in range(a_rank)]
        sb = [next(letters) for _ in range(b_rank)]
        for i, j in zip(list(lc) + list(lb), list(rc) + list(rb)):
            sb[j] = sa[i]
        batch = [sa[i] for i in lb]
        free_a = [sa[i] for i in range(a_rank) if i not in lc and i not in lb]
        free_b = [sb[j] for j in range(b_rank) if j not in rc and j not in rb]
        eq = f"{''.join(sa)},{''.join(sb)}->{''.join(batch + free_a + free_b)}"
        return _Tensor(self.b.node("Einsum", [an, bn], equation=eq), _identity(len(out_shape)), out_shape)

    # -- reductions ---------------------------------------------------------------------------------------------
    def _reduce(self, eqn, ins, op: str):
        (t,) = ins
        axes = tuple(eqn.params["axes"])
        phys_axes = [t.perm.index(a) for a in axes]
        remaining = [a for a in t.perm if a not in axes]
        new_perm = tuple(a - sum(1 for r in axes if r < a) for a in remaining)
        out_shape = tuple(eqn.outvars[0].aval.shape)
        if op == "ReduceSum" or self.b.opset >= 18:
            ax = self.b.const(np.asarray(phys_axes, dtype=np.int64), "axes")
            out = self.b.node(op, [t.name, ax], keepdims=0)
        else:
            out = self.b.node(op, [t.name], axes=phys_axes, keepdims=0)
        return _Tensor(out, new_perm, out_shape)

    def _p_reduce_sum(self, eqn, ins):
        return self._reduce(eqn, ins, "ReduceSum")

    def _p_reduce_max(self, eqn, ins):
        return self._reduce(eqn, ins, "ReduceMax")

    def _p_reduce_min(self, eqn, ins):
        return self._reduce(eqn, ins, "ReduceMin")

    def _p_reduce_window_max(self, eqn, ins):
        (t,) = ins
        p = eqn.params
        perm = t.perm
        win = [p["window_dimensions"][a] for a in perm]
        strides = [p["window_strides"][a] for a in perm]
        pads = [p["padding"][a] for a in perm]
        dil = [p["window_dilation"][a] for a in perm]
        if win[:2] != [1, 1] or strides[:2] != [1, 1] or any(d != 1 for d in p["base_dilation"]):
            raise NotImplementedError("ONNX export supports max-pooling over the spatial axes of a conv layout only")
        out = self.b.node(
            "MaxPool",
            [t.name],
            kernel_shape=win[2:],
            strides=strides[2:],
            pads=[lo for lo, _ in pads[2:]] + [hi for _, hi in pads[2:]],
            dilations=dil[2:],
        )
        return _Tensor(out, perm, tuple(eqn.outvars[0].aval.shape))

    # -- shape ops ----------------------------------------------------------------------------------------------
    def _reshape_to(self, t: _Tensor, shape: tuple[int, ...]) -> _Tensor:
        src = self.b.logical(t)
        s = self.b.const(np.asarray(shape, dtype=np.int64), "shape")
        return _Tensor(self.b.node("Reshape", [src, s]), _identity(len(shape)), shape)

    def _p_reshape(self, eqn, ins):
        if eqn.params.get("dimensions") is not None:
            raise NotImplementedError("ONNX export supports reshape without `dimensions`")
        return self._reshape_to(ins[0], tuple(eqn.outvars[0].aval.shape))

    def _p_squeeze(self, eqn, ins):
        return self._reshape_to(ins[0], tuple(eqn.outvars[0].aval.shape))

    def _p_expand_dims(self, eqn, ins):
        return self._reshape_to(ins[0], tuple(eqn.outvars[0].aval.shape))

    def _p_broadcast_in_dim(self, eqn, ins):
        (t,) = ins
        shape = tuple(eqn.params["shape"])
        dims = eqn.params["broadcast_dimensions"]
        new = [1] * len(shape)
        for k, d in enumerate(dims):
            new[d] = t.shape[k]
        r = self._reshape_to(t, tuple(new))
        if tuple(new) == shape:
            return r
        s = self.b.const(np.asarray(shape, dtype=np.int64), "shape")
        return _Tensor(self.b.node("Expand", [r.name, s]), r.perm, shape)

    def _p_transpose(self, eqn, ins):
        (t,) = ins
        q = tuple(eqn.params["permutation"])
        qinv = tuple(int(i) for i in np.argsort(q))
        new_perm = tuple(qinv[p] for p in t.perm)
        return _Tensor(t.name, new_perm, tuple(eqn.outvars[0].aval.shape))

    def _p_pad(self, eqn, ins):
        t, value = ins
        if isinstance(value, _Tensor):
            raise NotImplementedError("ONNX export supports pad with a constant padding value only")
        cfg = eqn.params["padding_config"]
        if any(interior != 0 for _, _, interior in cfg):
            raise NotImplementedError("ONNX export does not support interior padding")
        name = t.name
        phys_cfg = [cfg[a] for a in t.perm]
        phys_shape = [t.shape[a] for a in t.perm]
        if any(lo < 0 or hi < 0 for lo, hi, _ in phys_cfg):  # crop first
            axes = [k for k, (lo, hi, _) in enumerate(phys_cfg) if lo < 0 or hi < 0]
            starts = [max(0, -phys_cfg[k][0]) for k in axes]
            ends = [phys_shape[k] - max(0, -phys_cfg[k][1]) for k in axes]
            name = self._slice(name, starts, ends, axes, [1] * len(axes))
        if any(lo > 0 or hi > 0 for lo, hi, _ in phys_cfg):
            pads = [max(0, lo) for lo, _, _ in phys_cfg] + [max(0, hi) for _, hi, _ in phys_cfg]
            pads_name = self.b.const(np.asarray(pads, dtype=np.int64), "pads")
            val = self.b.const(np.asarray(value, dtype=eqn.outvars[0].aval.dtype))
            name = self.b.node("Pad", [name, pads_name, val], mode="constant")
        if name == t.name:
            name = self.b.node("Identity", [t.name])
        return _Tensor(name, t.perm, tuple(eqn.outvars[0].aval.shape))

    def _slice(self, name, starts, ends, axes, steps) -> str:
        i64 = lambda v: self.b.const(np.asarray(v, dtype=np.int64), "s")  # noqa: E731
        return self.b.node("Slice", [name, i64(starts), i64(ends), i64(axes), i64(steps)])

    def _p_slice(self, eqn, ins):
        (t,) = ins
        p = eqn.params
        strides = p["strides"] or (1,) * len(t.shape)
        axes = [t.perm.index(a) for a in range(len(t.shape))]
        name = self._slice(t.name, list(p["start_indices"]), list(p["limit_indices"]), axes, list(strides))
        return _Tensor(name, t.perm, tuple(eqn.outvars[0].aval.shape))

    def _p_concatenate(self, eqn, ins):
        dim = eqn.params["dimension"]
        names = []
        perm = next(v.perm for v in ins if isinstance(v, _Tensor))
        for v, var in zip(ins, eqn.invars):
            if isinstance(v, _Tensor):
                names.append(self.b.to_perm(v, perm))
            else:
                names.append(self.b.const_in(np.broadcast_to(v, var.aval.shape), perm))
        out = self.b.node("Concat", names, axis=perm.index(dim))
        return _Tensor(out, perm, tuple(eqn.outvars[0].aval.shape))


def export_onnx(
    apply_fn: Callable[[Any, Any], Any],
    params: Any,
    example_input: Any,
    path: str | pathlib.Path,
    *,
    opset: int = 17,
) -> pathlib.Path:
    """Export the inference function ``x -> apply_fn(params, x)`` to an ONNX file.

    Parameters
    ----------
    apply_fn : callable ``(params, x) -> y``, a pure JAX function (e.g. ``lambda p, x: model.apply(p, x)``), with
        batch-norm in inference mode. One array output.
    params : pytree of arrays; baked into the graph as initializers (constant-folded where possible).
    example_input : array, float32, e.g. NHWC ``(n, h, w, c)``. Fixes the input shape of the graph (input ``"x"``).
    path : file to write (parent folders are created).
    opset : ONNX opset version, >= 13.

    Returns
    -------
    pathlib.Path
        The written file, checked with ``onnx.checker.check_model``. The graph has one input ``"x"`` and one output
        ``"y"``.

    Raises
    ------
    ValueError
        ``example_input`` is not a float32 array of rank >= 1, or ``opset`` < 13.
    NotImplementedError
        The traced function uses a primitive outside the supported set (module docstring).
    ImportError
        ``onnx`` is not installed (extra ``onnx``).

    Notes
    -----
    Cost: one trace plus O(#equations) translation; the constant folding evaluates parameter-only subgraphs once.
    Outputs match JAX to float32 rounding (the operations are the same; only the summation order inside a
    convolution may differ). No gradient semantics: this is an inference export.
    """
    import jax

    x = np.asarray(example_input)
    if x.dtype != np.float32 or x.ndim < 1:
        raise ValueError(f"`example_input` must be a float32 array of rank >= 1; got dtype {x.dtype}, shape {x.shape}")
    if opset < 13:
        raise ValueError(f"`opset` must be >= 13; got {opset}")
    onnx = require("onnx", "onnx", "ONNX export")
    closed = jax.make_jaxpr(lambda inp: apply_fn(params, inp))(x)
    if len(closed.jaxpr.outvars) != 1:
        raise ValueError(f"`apply_fn` must return one array; got {len(closed.jaxpr.outvars)} outputs")
    b = _Builder(opset)
    (out,) = _Translator(b).run(closed.jaxpr, closed.consts, [_Tensor("x", _identity(x.ndim), x.shape)])
    out_aval = closed.jaxpr.outvars[0].aval
    if isinstance(out, _Tensor):
        name = b.logical(out)
    else:  # the output does not depend on x
        name = b.const(np.broadcast_to(out, out_aval.shape).astype(out_aval.dtype))
    b.nodes.append(b.helper.make_node("Identity", [name], ["y"]))
    elem = b.helper.np_dtype_to_tensor_dtype(np.dtype(out_aval.dtype))
    graph = b.helper.make_graph(
        b.nodes,
        "combax",
        [b.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(x.shape))],
        [b.helper.make_tensor_value_info("y", elem, list(out_aval.shape))],
        initializer=b.inits,
    )
    model = b.helper.make_model(graph, opset_imports=[b.helper.make_opsetid("", opset)], producer_name="combax")
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def onnx_forward(path: str | pathlib.Path, x: Any, *, threads: int | None = None) -> np.ndarray:
    """Run the ONNX file at ``path`` on input ``x`` with onnxruntime (CPU) and return the output ``"y"``.

    Parameters
    ----------
    path : an ONNX file written by :func:`export_onnx` (one input ``"x"``).
    x : array, cast to float32; its shape must be the exported input shape.
    threads : intra-op threads for onnxruntime, or None for its default.

    Raises
    ------
    ValueError
        ``path`` does not exist.
    ImportError
        ``onnxruntime`` is not installed (extra ``onnx``).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"`path` must be an existing ONNX file; got {str(path)!r}")
    ort = require("onnxruntime", "onnx", "running ONNX models")
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: np.asarray(x, dtype=np.float32)})[0]
