"""Running a :class:`~modularcnn.graph.Graph`: forward in topological order, backward in reverse.

**Steps.** The nodes are grouped into steps: a *chain* is a run of one-input nodes in which each node
takes the previous node's output and is its only consumer (and that output is not a model output); it
runs through the planner (:func:`modularcnn.execution.plan`), so a ``Conv2D(relu)`` + 2×2 ``MaxPooling`` pair
inside a chain runs fused, as in a ``Net``. A merge node (several inputs) is a step of its own.

**Memory.** The forward pass keeps each tensor only until its last consumer has run (outputs are kept);
the backward pass keeps a gradient only until the node that made the tensor has used it. (Layers still
keep what their own backward pass needs, as in a ``Net``.)

**Shared layers.** A layer called several times keeps one set of weights, but each call needs its own
cached values for the backward pass. The first call runs the layer itself; every other call runs a
*call instance*: a shallow copy sharing the layer's ``params`` dict (so weights, moving statistics and
every later assignment are the same arrays) with its own ``grads`` and scratch workspaces. It is made
afresh at every forward pass, so it always sees the layer's current attributes. After the backward pass
the instances' gradients are added into the layer's ``grads``: a shared layer's gradient is the sum
over its calls.

**Fused losses.** When the loss starts from an output layer's pre-activation (softmax + cross-entropy),
:meth:`GraphExecutor.backward` is told so per output and runs that layer's ``backward_preactivation``.
"""

import copy
import time

from .execution import ExecutionOptions, Plan, plan, step_layers
from .kernels.workspace import Workspace


class _Step:
    """One chain of nodes (``merge`` False) or one merge node (``merge`` True)."""

    def __init__(self, node, merge):
        self.nodes = [node]
        self.merge = merge
        self.inputs = list(node.inputs)  # the tensors the step reads
        self.frees = []                  # tensors no later step reads (dropped after this one)

    @property
    def output(self):
        return self.nodes[-1].output


def _steps(graph):
    output_ids = {id(t) for t in graph.outputs}
    steps, chain_of = [], {}
    for node in graph.nodes:
        if not node.inputs:
            continue  # an Input: its tensor is given
        merge = node.packed
        if not merge:
            source = node.inputs[0]
            step = chain_of.get(id(source.node))
            if (step is not None and step.nodes[-1] is source.node and id(source) not in output_ids
                    and len(graph.consumers.get(id(source), ())) == 1):
                step.nodes.append(node)
                chain_of[id(node)] = step
                continue
        step = _Step(node, merge)
        steps.append(step)
        if not merge:
            chain_of[id(node)] = step
    # Where each tensor is read last (forward), so that it can be dropped right after.
    last_reader = {}
    for index, step in enumerate(steps):
        for tensor in step.inputs:
            last_reader[id(tensor)] = index
    tensors = {id(t): t for step in steps for t in step.inputs}
    for key, index in last_reader.items():
        if key not in output_ids:
            steps[index].frees.append(tensors[key])
    return steps


def call_instance(layer, workspaces):
    """A copy of ``layer`` for one more call: same ``params`` dict, own ``grads`` and workspaces."""
    instance = copy.copy(layer)
    instance.grads = {}
    for key, value in vars(layer).items():
        if isinstance(value, Workspace):
            setattr(instance, key, workspaces.setdefault(key, Workspace()))
    return instance


def _accumulate(grads, tensor, gradient):
    """Add ``gradient`` into the running gradient of ``tensor`` (never writing into a caller's array)."""
    entry = grads.get(id(tensor))
    if entry is None:
        grads[id(tensor)] = [gradient, False]
    elif entry[1]:
        entry[0] += gradient
    else:
        grads[id(tensor)] = [entry[0] + gradient, True]


class GraphExecutor:
    """Forward and backward passes of ``graph``; ``fusion`` as ``Net.fusion``."""

    def __init__(self, graph):
        self.graph = graph
        self.steps = _steps(graph)
        self._workspaces = {}
        self._instances = None
        self._plans = None
        #: ``timer(step, "forward" or "backward", function, *args)`` while the profiler times steps.
        self.timer = None

    def _timed(self, step, phase, function, *args, **kwargs):
        # The profiler's timer (the protocol of LayerStack's), called around each step's passes.
        if self.timer is None:
            return function(*args, **kwargs)
        return self.timer(step, phase, function, *args, **kwargs)

    def instance(self, node):
        """The object that ran ``node`` in the last forward pass (the layer, or its call instance)."""
        if self._instances is None:
            return node.layer
        return self._instances.get(id(node), node.layer)

    def _make_instances(self):
        instances = {}
        for node in self.graph.nodes:
            call = self.graph.calls[id(node)]
            instances[id(node)] = node.layer if call == 0 else call_instance(
                node.layer, self._workspaces.setdefault(id(node), {}))
        return instances

    def plan(self, options=None, name="model"):
        """The :class:`~modularcnn.execution.Plan` of the whole graph under ``options``: each chain's
        steps (fused ones included) and each merge layer, in execution order (a shared layer once per
        call)."""
        steps = []
        for step in self.steps:
            layers = [node.layer for node in step.nodes]
            steps.extend(layers if step.merge else run_plan(layers, options))
        return Plan(steps, options or ExecutionOptions(), name)

    def ran(self, options=None, name="model"):
        """The :class:`~modularcnn.execution.Plan` of the last forward pass (None before the first)."""
        if self._plans is None:
            return None
        steps = []
        for step, chain in zip(self.steps, self._plans):
            steps.extend([self.instance(step.nodes[0])] if chain is None else chain)
        return Plan(steps, options or ExecutionOptions(), name)

    def forward(self, arrays, training=False, options=None):
        """``arrays`` (one per model input, ``(N, *shape)``) -> list of the outputs' arrays."""
        graph = self.graph
        self._instances = instances = self._make_instances()
        values = {id(t): a for t, a in zip(graph.inputs, arrays)}
        self._plans = []
        for step in self.steps:
            if step.merge:
                node = step.nodes[0]
                instance = instances[id(node)]
                values[id(node.output)] = self._timed(
                    instance, "forward", instance.forward, [values[id(t)] for t in node.inputs],
                    training=training)
                self._plans.append(None)
            else:
                plan = run_plan([instances[id(n)] for n in step.nodes], options)
                x = values[id(step.inputs[0])]
                for part in plan:
                    x = self._timed(part, "forward", part.forward, x, training=training)
                values[id(step.output)] = x
                self._plans.append(plan)
            for tensor in step.frees:
                values.pop(id(tensor), None)
        return [values[id(t)] for t in graph.outputs]

    def backward(self, output_grads, input_gradient=True, preactivation=None):
        """Back-propagate ``output_grads`` (one per output) and return one gradient per input.

        ``preactivation[k]`` says the gradient of output ``k`` is with respect to its layer's
        pre-activation. Inputs whose gradient is not needed (``input_gradient=False``) get None.
        Fills every layer's ``grads`` (shared layers: the sum over their calls).
        """
        if self._plans is None:
            raise ValueError("backward needs a forward pass of this model first")
        graph = self.graph
        preactivation = preactivation or [False] * len(graph.outputs)
        grads, from_preactivation = {}, set()
        for tensor, gradient, pre in zip(graph.outputs, output_grads, preactivation):
            if pre:
                if id(tensor) in grads or len(graph.consumers.get(id(tensor), ())):
                    raise ValueError(f"output {tensor.name!r}: a pre-activation gradient needs an "
                                     "output that nothing else consumes")
                from_preactivation.add(id(tensor))
            _accumulate(grads, tensor, gradient)
        input_ids = {id(t) for t in graph.inputs}

        def wanted(tensor):
            return input_gradient or id(tensor) not in input_ids

        for step, plan in zip(reversed(self.steps), reversed(self._plans)):
            entry = grads.pop(id(step.output), None)
            if entry is None:
                continue
            gradient = entry[0]
            if step.merge:
                node = step.nodes[0]
                instance = self.instance(node)
                parts = self._timed(instance, "backward", instance.backward, gradient)
                for tensor, part in zip(node.inputs, parts):
                    if wanted(tensor):
                        _accumulate(grads, tensor, part)
                continue
            first = step_first_layer(plan)
            source = step.inputs[0]
            first.input_grad_needed = wanted(source)
            try:
                for position in range(len(plan) - 1, -1, -1):
                    part = plan[position]
                    pre = position == len(plan) - 1 and id(step.output) in from_preactivation
                    gradient = self._timed(part, "backward", part.backward_preactivation
                                           if pre else part.backward, gradient)
            finally:
                first.input_grad_needed = True
            if wanted(source):
                _accumulate(grads, source, gradient)
        self._sum_shared_gradients()
        return [grads[id(t)][0] if id(t) in grads else None for t in graph.inputs]

    def _sum_shared_gradients(self):
        for node in self.graph.nodes:
            instance = self.instance(node)
            if instance is node.layer:
                continue
            owner = node.layer.grads
            for key, value in instance.grads.items():
                owner[key] = owner[key] + value if key in owner else value


def run_plan(layers, options):
    """The steps of one chain under ``options`` (the model's :class:`ExecutionOptions`)."""
    return plan(layers, options or ExecutionOptions()).steps


def step_first_layer(plan):
    """The layer whose ``input_grad_needed`` decides a plan's first step (a fused pair's conv)."""
    return step_layers(plan[0])[0]
