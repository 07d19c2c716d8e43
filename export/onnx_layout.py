"""Layout clean-up of a tf2onnx graph across If boundaries: NHWC/NCHW Transposes out of branches.

tf2onnx turns TensorFlow's NHWC convolutions into ONNX's NCHW ones with a Transpose on each
side, then cancels the pairs it can, but not across an If node's boundary. A conditional
block (ConvNet-AIG's skipped blocks) then transposes its input to NCHW inside the branch and
its output back to NHWC, and what reads the If's output (the next gate's ReduceMean, the next
If) sees the NHWC copy: two or three Transposes per block, 22 ms of a 158 ms Adanet-50 call in
an onnxruntime profile. tf2onnx's own optimizer, run again on the converted model, breaks the
branches' references to outer values, hence this pass.

`move_transposes_out_of_ifs(model)` rewrites the top-level graph in place, to a fixed point:
1. sink: where both branches of an If end an output with the same Transpose (inside the branch,
   or an Identity of an outer Transpose's output), the branches return the untransposed tensor
   and one Transpose follows the If;
2. cancel: a Transpose's consumers, in the graph or inside any branch, read its input instead
   where they can: an inverse Transpose becomes an Identity, and a ReduceMean over axes that
   the permutation maps in order reduces the mapped axes;
3. Transposes nobody reads any more are removed.
Every step keeps the function the graph computes; the export stage's parity check runs on the
rewritten model.
"""

from __future__ import annotations

import onnx
from onnx import helper

from export.onnx_graph import branches, drop_unread, walk

__all__ = ["move_transposes_out_of_ifs"]


def _perm(node) -> list[int] | None:
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), None)


def _make_identity(node, source=None):
    node.op_type = "Identity"
    del node.attribute[:]
    if source is not None:
        node.input[0] = source


def _tail(branch, index, outer):
    """(perm, rewrite) when the branch's output `index` is Transpose(perm)(y), so that
    `rewrite()` makes the branch return y; None otherwise. `outer`: producers of the top level."""
    name = branch.output[index].name
    producer = next((n for n in branch.node if name in n.output), None)
    if producer is None:
        return None
    if producer.op_type == "Transpose":
        others = [n for n in walk(branch) if n is not producer and name in n.input]
        if others:
            return None
        return _perm(producer), lambda: _make_identity(producer)
    if producer.op_type == "Identity":
        source = outer.get(producer.input[0])
        if source is not None and source.op_type == "Transpose":
            return _perm(source), lambda: _make_identity(producer, source.input[0])
    return None


def _sink(graph, position, node, outer) -> bool:
    then_branch, else_branch = branches(node)
    sunk = False
    for index, name in enumerate(list(node.output)):
        tails = [_tail(branch, index, outer) for branch in (then_branch, else_branch)]
        if None in tails or tails[0][0] != tails[1][0] or tails[0][0] is None:
            continue
        for branch, (_, rewrite) in zip((then_branch, else_branch), tails):
            rewrite()
            branch.output[index].type.tensor_type.ClearField("shape")  # now the other layout
        untransposed = f"{name}__before_transpose"
        node.output[index] = untransposed
        graph.node.insert(position + 1, helper.make_node(
            "Transpose", [untransposed], [name], perm=tails[0][0], name=f"{untransposed}_transpose"))
        sunk = True
    return sunk


def _cancel(graph) -> bool:
    changed = False
    for transpose in [n for n in graph.node if n.op_type == "Transpose"]:
        perm, source, name = _perm(transpose), transpose.input[0], transpose.output[0]
        if perm is None:
            continue
        for consumer in list(walk(graph)):
            if consumer is transpose or not consumer.input or consumer.input[0] != name:
                continue
            if consumer.op_type == "Transpose":
                inner = _perm(consumer)
                if inner is not None and [perm[i] for i in inner] == list(range(len(perm))):
                    _make_identity(consumer, source)
                    changed = True
            elif consumer.op_type == "ReduceMean":
                attrs = {a.name: a for a in consumer.attribute}
                if "axes" not in attrs or attrs.get("keepdims") is None or attrs["keepdims"].i != 0:
                    continue
                axes = [a % len(perm) for a in attrs["axes"].ints]
                kept = [perm[i] for i in range(len(perm)) if i not in axes]
                if kept == sorted(kept):  # the remaining axes come out in the same order
                    consumer.input[0] = source
                    del attrs["axes"].ints[:]
                    attrs["axes"].ints.extend(sorted(perm[a] for a in axes))
                    changed = True
    return changed


def move_transposes_out_of_ifs(model: onnx.ModelProto) -> int:
    """Rewrite `model`'s top-level If nodes to pass untransposed tensors (module docstring);
    returns the number of If nodes changed."""
    graph, moved = model.graph, 0
    while True:
        outer = {o: n for n in graph.node for o in n.output}
        position = next((i for i, n in enumerate(graph.node) if n.op_type == "If" and _sink(graph, i, n, outer)),
                        None)
        if position is not None:
            moved += 1
            continue
        if not _cancel(graph):
            break
    drop_unread(graph, "Transpose")
    return moved
