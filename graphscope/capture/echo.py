"""A step that repeats an earlier step's graph, recorded as an echo of it.

A training loop builds the same graph every step. Once a step of some shape was captured in
full, a later step of that shape (the same ops reading each other the same way, outputs and
named tensors of the same shapes, the same leaf tensors, no history of earlier steps in it)
is recorded from a quick look at the graph: each op's own stamps (the step it was made in,
its `file:line`, its module calls), what each leaf received and its `.grad`. Its records
are the earlier step's, with those read in: no names are looked up and no record is built
until the step is read. Once stamping steps aside, most of its function records are the
earlier step's moved to it: the step is digested and written to the run file from the few
others. Nothing here keeps a reference to the graph once the backward has run.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Sequence

import torch

from graphscope.model.history import Partial
from graphscope.capture.distributed import averaged_across_ranks
from graphscope.capture.identity import Stamp
from graphscope.capture.outputs import is_gradient_edge, output_key
from graphscope.capture.pending import ACCUMULATE_GRAD
from graphscope.capture.sources import MODULE_KEY, SOURCE_KEY
from graphscope.capture.stats import StatsQueue
from graphscope.capture.visit import Visit, visit_order
from graphscope.capture.walker import Walk, _raw_name
from graphscope.model import Edge, Node, NodeKind, Snapshot
from graphscope.model.partials import shift_of_calls
from graphscope.model.snapshot import DIGESTED, Digest, Repeat, digest_of, held_bytes

_new = tuple.__new__
_NAME, _FIRST_STEP, _SOURCE, _MODULE, _CALLS, _ORIGIN, _SAVED_BYTES, _SAVED_FREED, _GRAD, _GRAD_STEP = (
    Node._fields.index(name) for name in ("name", "first_step", "source", "module", "calls", "origin", "saved_bytes",
                                          "saved_freed", "grad", "grad_step"))


@dataclass
class Look:
    """A quick look at a step's graph: its functions in visit order (the graph, held only until
    the backward has run), which reads which, and whether it reaches an earlier step's history."""

    order: list[Any]
    shape: Hashable
    whole: bool
    visit: Visit


@dataclass(frozen=True)
class Template:
    """A step captured in full that later steps of its shape echo: its partial, each visited
    function's number in its records, and the visit positions of its leaves (with a weak
    reference to each leaf tensor, its shape and dtype) and of the functions whose outputs
    are tensor nodes (with those tensors' shapes)."""

    step: int
    partial: Partial
    numbers: tuple[int, ...]
    leaves: tuple[int, ...]
    shapes: tuple[tuple[int, int, tuple[int, ...]], ...]
    leaf_tensors: tuple[tuple[weakref.ref, tuple[int, ...], torch.dtype], ...]

    @functools.cached_property
    def bare_edges(self) -> tuple[Edge, ...]:
        """The template's edges without their gradients: the edges of every echo of it, one
        tuple for all of them (made when the first echo's records are read)."""
        return tuple([_new(Edge, (e.source, e.target, None)) for e in self.partial.snapshot.edges])

    @functools.cached_property
    def clean(self) -> frozenset[int]:
        """The functions whose records an echo that takes their stamps from this template (see
        `filler`) makes exactly as `moved` moves the template's: made in the template's step,
        first captured there, nothing freed."""
        first, step = self.partial.first, self.step
        nodes = self.partial.snapshot.nodes
        return frozenset(number for number in self.numbers
                         if (node := nodes[first + number]).kind is NodeKind.FUNCTION and node.first_step == step
                         and node.origin == (step, number) and node.saved_freed is None)

    @functools.cached_property
    def outer_calls(self) -> frozenset[int]:
        """The outermost module calls its functions ran in, by number: an echo whose stamps are
        taken from it must have made its own there, shifted, at the same lines."""
        nodes = self.partial.snapshot.nodes
        return frozenset(node.calls[0][1] for node in nodes if node.kind is NodeKind.FUNCTION and node.calls)

    @functools.cached_property
    def made_tensors(self) -> tuple[int, ...]:
        """Where the tensor nodes that are no leaves are in the template's records: an echo
        has its own, made in its step and without gradients."""
        return tuple([i for i, node in enumerate(self.partial.snapshot.nodes)
                      if node.kind is not NodeKind.LEAF and node.is_tensor])


def look(outputs: Sequence[Any], stamp: Stamp) -> Look | None:
    """The visit order and shape of the graph behind `outputs` (None for gradient edges)."""
    if any(is_gradient_edge(o) or not isinstance(o, torch.Tensor) or not o.requires_grad for o in outputs):
        return None
    with torch._C.DisableTorchFunction():
        keys = list(dict.fromkeys(output_key(o) for o in outputs))
        functions = [fn for fn, _ in keys]
        visit = Visit(functions, stamp.key, visit_order(functions, stamp.key))
    index, order, reads, stopped = visit.found
    types = tuple(map(type, order))
    whole = all(_raw_name(order[fi]) == ACCUMULATE_GRAD for fi in stopped)
    roots = tuple((index[fn], nr) for fn, nr in keys)
    return Look(order, (types, tuple(reads), roots), whole, visit)


def template(look: Look, walk: Walk, step: int, partial: Partial) -> Template:
    """What later steps of this look's shape need of the full capture `walk` made of it."""
    numbers = tuple(walk.index[fn] for fn in look.order)
    position = {number: i for i, number in enumerate(numbers)}
    leaves = tuple(i for i, fn in enumerate(look.order) if _raw_name(fn) == ACCUMULATE_GRAD)
    shapes = tuple((position[key[1]], nr, walk.nodes[node].shape) for node, key, nr in walk.tensor_keys
                   if key[0] == step and walk.nodes[node].shape is not None)
    with torch._C.DisableTorchFunction():
        variables = [look.order[i].variable for i in leaves]
        leaf_tensors = tuple((weakref.ref(v), tuple(v.shape), v.dtype) for v in variables)
    return Template(step, partial, numbers, leaves, shapes, leaf_tensors)


def same_leaves(look: Look, template: Template) -> bool:
    """True when this graph's leaves are the template's tensors, or new tensors of their
    shapes and dtypes where those are gone (an input made each step). Only then may a step
    of its shape take its records, leaf names included, or its stamps: two parameters used
    alike (one head or another of a forward) make graphs of one shape in other modules."""
    with torch._C.DisableTorchFunction():
        for position, (known, shape, dtype) in zip(template.leaves, template.leaf_tensors):
            variable, held = look.order[position].variable, known()
            if (held is not None and held is not variable) or tuple(variable.shape) != shape or variable.dtype != dtype:
                return False
    return True


def fits(look: Look, template: Template) -> bool:
    """True when the tensor nodes of `template` have the same shapes in this graph (a smaller
    last batch changes them and is no echo)."""
    for position, nr, shape in template.shapes:
        metadata = look.order[position]._input_metadata
        if nr >= len(metadata) or tuple(metadata[nr].shape) != shape:
            return False
    return True


Filler = Callable[[int], tuple]


def filler(template: Template, step: int, call_shift: int) -> Filler:
    """The stamps of function `number` of a step shaped like `template`, taken from it: its
    source and module, made as many steps back as there, its module calls shifted by
    `call_shift` (the calls made since the template's forward pass began)."""
    old, first = template.step, template.partial.first

    def stamps(number: int) -> tuple:
        node = template.partial.snapshot.nodes[first + number]
        calls = None if node.calls is None else tuple([(depth, call + call_shift) for depth, call in node.calls])
        made = step if node.first_step is None else step + node.first_step - old
        return made, node.source, node.module, calls

    return stamps


def same_stamps(echo: Echo) -> bool:
    """True when every new op of an echo was stamped, at the template's lines and modules, as
    many steps back as there (the stamps `filler` takes from the template must be true). A
    leaf's accumulator is no op: its stamps are the leaf's own, read at every step, never
    taken from the template."""
    ops = _new_ops(echo)
    old, step = echo.template.step, echo.step
    return bool(ops) and all(made is not None and _stamped_as(node, old, made - step, source, module)
                             for node, (made, source, module, _) in ops)


def _stamped_as(node: Node, old: int, back: int, source: str | None, module: str | None) -> bool:
    """True when an op made `back` steps from its own step at `source` in `module` was stamped
    as the template's record `node` (the template's step `old`) was."""
    return (source is not None and node.first_step is not None
            and (back, source, module) == (node.first_step - old, node.source, node.module))


def stamped_elsewhere(echo: Echo) -> bool:
    """True when a new op of an echo was stamped at another line or module than the template's
    (one graph shape built at several places)."""
    return any(source is not None and (source, module) != (node.source, node.module)
               for node, (_, source, module, _) in _new_ops(echo))


def _new_ops(echo: Echo) -> list[tuple[Node, tuple]]:
    """The template's record and this echo's stamps of each op the echo captured first."""
    template = echo.template
    first, nodes = template.partial.first, template.partial.snapshot.nodes
    return [(nodes[first + number], stamps) for number, stamps in echo.stamps.items()
            if nodes[first + number].kind is not NodeKind.LEAF]


def walk_like(look: Look, walk: Walk, template: Template, step: int) -> bool:
    """For a full capture of a graph shaped like `template` while stamping is on: True when
    each op it captured first was stamped as `same_stamps` asks of an echo."""
    first, old, nodes = template.partial.first, template.step, template.partial.snapshot.nodes
    ops = 0
    for fn, number in zip(look.order, template.numbers):
        mine, theirs = walk.nodes[walk.first_function + walk.index[fn]], nodes[first + number]
        if theirs.kind is NodeKind.LEAF or mine.origin is None or mine.origin[0] != step:
            continue
        ops += 1
        if not _stamped_as(theirs, old, mine.first_step - step, mine.source, mine.module):
            return False
    return ops > 0


def fill_walk(walk: Walk, fill: Filler, step: int) -> tuple[int, ...]:
    """Give the functions of a full capture that were made unstamped the template's stamps,
    and the tensors they output their source and the step they were made in; returns the
    numbers of the functions filled."""
    first, filled = walk.first_function, []
    for fi in range(len(walk.children)):
        node = walk.nodes[first + fi]
        if node.kind is NodeKind.FUNCTION and node.source is None:
            made, source, module, calls = fill(fi)
            walk.nodes[first + fi] = node._replace(first_step=made, source=source, module=module, calls=calls)
            filled.append(fi)
    for i, node in enumerate(walk.nodes):
        origin = node.origin
        if node.is_tensor and node.kind is not NodeKind.LEAF and node.source is None and origin and origin[0] == step:
            made_by = walk.nodes[first + origin[1]]
            walk.nodes[i] = node._replace(source=made_by.source, first_step=made_by.first_step)
    return tuple(filled)


def unfill_walk(walk: Walk, filled: tuple[int, ...], step: int) -> None:
    """Take back the stamps `fill_walk` gave the functions `filled` and the tensors they output
    (the step they were made in stays)."""
    first, taken = walk.first_function, set(filled)
    for fi in filled:
        walk.nodes[first + fi] = walk.nodes[first + fi]._replace(source=None, module=None, calls=None)
    for i, node in enumerate(walk.nodes):
        origin = node.origin
        if node.is_tensor and node.kind is not NodeKind.LEAF and origin and origin[0] == step and origin[1] in taken:
            walk.nodes[i] = node._replace(source=None)


class Echo:
    """Records one step as an echo of `template`: stamps, what the leaves received, their .grad.
    With a `call_shift`, the ops were made while stamping was off: their stamps are the
    template's (see `filler`), taken when the records are read, not kept per step. Made at
    each step they were nested tuples made anew, which CPython untracks one level per
    collection: each reached the oldest generation and was scanned at its every full pass.
    An echo found `unlike` its template (`stamped_elsewhere`: one graph shape built at several
    places) names none of its tensors, as names are not looked up for an echo: the
    template's would be another place's."""

    unlike = False
    taken_back = False

    def __init__(self, look: Look, template: Template, stamp: Stamp, queue: StatsQueue, call_shift: int | None = None):
        self.template = template
        self.step = stamp.step
        self.queue = queue
        self.shares: dict[int, int] = {}  # function number: where the queue keeps its statistics
        self.copies: dict[int, torch.Tensor] | None = {}
        self.grads: dict[int, int] = {}
        self.handles: list[Any] | tuple[()] = []
        self.call_shift = call_shift
        self.stamps, self.filled = _stamp(look.order, template.numbers, stamp, call_shift is not None)
        self.variables: list[tuple[torch.Tensor, int]] | tuple[()] = [
            (look.order[i].variable, template.numbers[i]) for i in template.leaves]
        self.fresh: set[int] | tuple[()] = set()
        self.received: list[int] | tuple[int, ...] = []  # fresh leaves whose .grad is their share: one statistic for both
        if averaged_across_ranks():  # no share across DDP ranks, as for a full capture: .grad is their average
            return
        with torch._C.DisableTorchFunction():
            for i, (variable, number) in zip(template.leaves, self.variables):
                if variable.grad is None and getattr(variable, "_post_accumulate_grad_hooks", None) is None:
                    self.fresh.add(number)  # its .grad after the backward is what it receives: no hook
                else:
                    self.handles.append(look.order[i].register_hook(self._leaf_hook(number)))

    def _leaf_hook(self, number: int) -> Callable[[tuple, tuple], None]:
        """What the leaf of function `number` received: its share of this step."""

        def hook(_: tuple, grad_outputs: tuple) -> None:
            if grad_outputs and grad_outputs[0] is not None:
                with torch._C.DisableTorchFunction():
                    share = self.copies[number] = grad_outputs[0].detach().clone()  # compared with .grad after
                    self.shares[number] = self.queue.keep(share)

        return hook

    def finish(self) -> None:
        """After the backward: unhook, queue each leaf's .grad, and let go of the graph."""
        for handle in self.handles:
            handle.remove()
        with torch._C.DisableTorchFunction():
            for variable, number in self.variables:
                grad, share = variable.grad, self.copies.get(number)
                if number in self.fresh:
                    self.grads[number] = self.queue.keep(grad, copy=True)
                    if grad is not None:
                        self.received.append(number)
                elif _equal(grad, share):
                    self.grads[number] = self.shares[number]
                else:
                    self.grads[number] = self.queue.keep(grad, copy=True)
        # Kept with the step until its records are read: tuples, which hold nothing the
        # garbage collector must scan again at each of its full passes over a long run.
        self.handles = self.variables = self.fresh = ()
        self.copies = None
        self.received = tuple(self.received)

    def take_back(self) -> None:
        """Drop the stamps taken from the template (a later step of its shape, stamped, was made
        at other lines): the ops keep the step they were made in, the tensors lose their names."""
        self.taken_back = self.unlike = True
        self.__dict__.pop("_repeated", None)

    def partial(self, call: str, notes: tuple[str, ...]) -> Partial:
        """The step's partial: the template's structure, these records made when first read."""
        source = self.template.partial
        step, old = self.step, self.template.step
        tensors = tuple([(node, (step, key[1]) if key[0] == old else key, nr) for node, key, nr in source.tensors])
        snapshot = Snapshot.deferred(self, step, call, notes, "leaves")  # calls the echo: no bound method a step
        return Partial(snapshot, source.first, source.children, True, {}, source.roots, tensors, {}, {},
                       source.first_names, like=old)

    def __call__(self) -> tuple[tuple[Node, ...], tuple[Edge, ...]]:
        """The step's records, once the queued statistics are computed."""
        nodes = list(self.template.partial.snapshot.nodes)
        for i, node in self._changed(frozenset()).items():
            nodes[i] = node
        return tuple(nodes), self.template.bare_edges

    def repeat(self) -> Repeat | None:
        """The records that may differ from the template's moved to this step (see Repeat):
        all but those of the functions whose stamps were taken from the template and that it
        moves as they are (see Template.clean). None when how the records are moved does not
        fit those (the step's records are then built and compared). Made once: the digest
        and the run file both read them."""
        return self._repeated

    @functools.cached_property
    def _repeated(self) -> Repeat | None:
        """See `repeat`."""
        template = self.template
        clean = template.clean.intersection(self.filled) if self.filled and not self.taken_back else frozenset()
        changed = self._changed(clean)
        first, nodes = template.partial.first, template.partial.snapshot.nodes
        skipped = {first + number for number in clean}
        records = {i: changed.get(i, node) for i, node in enumerate(nodes) if i not in skipped}
        fill = filler(template, self.step, self.call_shift) if skipped else None
        shift = shift_of_calls(((node, fill(i - first)[3] if i in skipped else records[i].calls)
                                for i, node in enumerate(nodes)), template.step)  # as the run file tells it
        sized = any(node.saved_bytes is not None for node in records.values())
        if any((nodes[i].calls and shift != self.call_shift) or (sized and nodes[i].saved_bytes is not None)
               for i in skipped):
            return None
        return Repeat(records, shift, sized)

    def digest(self) -> Digest:
        """The step summed up (see Digest) from the records `repeat` makes, without the others."""
        known = self.repeat()
        if known is None:
            return digest_of(*self(), self.step)._replace(like=self.template.step)
        nodes, records = self.template.partial.snapshot.nodes, known.records
        carried = [node for node in records.values() if node.carried_over(self.step)]
        sources = {node.source for node in records.values() if node.source}
        sources.update(node.source for i, node in enumerate(nodes) if i not in records and node.source)
        return Digest(len(nodes), len(self.template.partial.snapshot.edges), len(carried),
                      frozenset(node.first_step for node in carried), held_bytes(carried), frozenset(sources),
                      tuple(node for node in records.values() if node.kind in DIGESTED), (), self.template.step)

    def _changed(self, skip: frozenset[int]) -> dict[int, Node]:
        """The records that differ from the template's, by position, once the queued statistics
        are computed; the functions in `skip` left out."""
        self.queue.flush()
        kept = {index: self.queue.kept_stat(index) for index in {*self.shares.values(), *self.grads.values()}}
        grads = {number: kept[index] for number, index in self.grads.items()}
        shares = {number: kept[index] for number, index in self.shares.items()}
        shares.update({number: grads[number] for number in self.received})
        stamps = self.stamps
        if self.filled:
            fill = filler(self.template, self.step, self.call_shift)  # set whenever ops were filled
            filled = {number: fill(number) for number in self.filled if number not in skip}
            if self.taken_back:
                filled = {number: (made, None, None, None) for number, (made, *_) in filled.items()}
            stamps = {**stamps, **filled}
        return _echo_records(self.template, self.step, stamps, shares, grads, self.unlike)


def _equal(grad: torch.Tensor | None, share: torch.Tensor | None) -> bool:
    """True when a leaf's `.grad` holds exactly the values it received this step (the usual
    case after zero_grad): its statistics are then the share's, computed once."""
    return (grad is not None and share is not None and grad.layout is torch.strided
            and share.layout is torch.strided and grad.shape == share.shape and grad.dtype == share.dtype
            and grad.device == share.device and torch.equal(grad, share))


def _stamp(order: list[Any], numbers: tuple[int, ...], stamp: Stamp,
           filling: bool) -> tuple[dict[int, tuple], tuple[int, ...]]:
    """Mark each function of the graph as captured by this step (where it is in its records),
    and read back, for the new ones, the step they were made in, their source and module
    calls; when `filling`, the numbers of those made unstamped, whose stamps are the template's.
    Once stamping resumed during the step before (`stamp.resumed`), an op made unstamped was
    made before that, in a step no stamp tells: none is said."""
    keys = stamp.keys
    key, at_key, made_key, calls_key, step = keys.captured, keys.at, keys.made, keys.calls, stamp.step
    read, filled = {}, []
    for fn, number in zip(order, numbers):
        metadata = fn.metadata
        if metadata.setdefault(key, step) == step:
            metadata[at_key] = (step, number)
            variable = getattr(fn, "variable", None)
            if variable is not None:  # a leaf met with a new AccumulateGrad: the tensor is not new
                read[number] = (stamp.leaves.first_step(variable, step), None, None, None)
                continue
            if filling and SOURCE_KEY not in metadata:
                filled.append(number)
                continue
            made = metadata.get(made_key)
            if made is None and not (stamp.resumed and SOURCE_KEY not in metadata):
                made = step
            read[number] = (made, metadata.get(SOURCE_KEY), metadata.get(MODULE_KEY), metadata.get(calls_key))
    return read, tuple(filled)


def _echo_records(template: Template, step: int, stamps: dict[int, tuple], shares: dict[int, Any],
                  grads: dict[int, Any], unlike: bool = False) -> dict[int, Node]:
    """The template's records that this step changes, by position: its own stamps on each new
    function, its leaves' gradients, the tensor nodes made now marked as this step's (with no
    gradient; no edge has one either; `unlike` the template, with no name and their maker's
    line). Records are made from field lists by one C call each: a long loop makes millions."""
    first, old = template.partial.first, template.step
    nodes = template.partial.snapshot.nodes
    changed: dict[int, Node] = {}
    for number, (made, source, module, calls) in stamps.items():
        fields = list(nodes[first + number])
        fields[_FIRST_STEP], fields[_SOURCE], fields[_MODULE], fields[_CALLS] = made, source, module, calls
        fields[_ORIGIN], fields[_SAVED_BYTES], fields[_SAVED_FREED] = (step, number), None, None
        changed[first + number] = _new(Node, fields)
    for number in shares.keys() | grads.keys():
        fields = list(changed.get(first + number, nodes[first + number]))
        fields[_GRAD], fields[_GRAD_STEP] = grads.get(number), shares.get(number)
        changed[first + number] = _new(Node, fields)
    for i in template.made_tensors:
        fields = list(changed.get(i, nodes[i]))
        origin = fields[_ORIGIN]
        if origin is not None and origin[0] == old:
            fields[_ORIGIN], fields[_FIRST_STEP] = (step, *origin[1:]), stamps.get(origin[1], (step,))[0]
            if unlike:
                fields[_NAME], fields[_SOURCE] = None, stamps.get(origin[1], (None, None))[1]
        fields[_GRAD], fields[_GRAD_STEP] = None, None
        changed[i] = _new(Node, fields)
    return changed
