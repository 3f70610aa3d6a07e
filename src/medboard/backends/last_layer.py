"""The last decoder layer computed past its attention only where scoring reads it.

Scoring reads a forward pass at a few positions per question (one, when every choice is one
token). Every layer but the last must be computed at every position, since the next layer
attends to all of them, and so must the last layer's attention; but what follows it (the
residual add, the feed-forward block and its norms, the model's final norm) works on each
position alone. LastLayerRows runs that part on the read positions only: for SmolLM2-135M the
last layer's MLP is 1/30 of all MLP work and 2/3 of the layer's.

It splits a decoder layer of the usual shape (input_layernorm, self_attn, post_attention_layernorm,
mlp; Gemma's pre/post_feedforward_layernorm around the MLP when it has them) the way the layer's
own forward runs it; `matches` checks that on the model before scoring relies on it.
"""

from collections.abc import Callable
from typing import Any

from medboard.backends.kernels import FEED_FORWARD_NORMS, INDUCTOR_OPTIONS, decoder_layers

PARTS = ("input_layernorm", "self_attn", "post_attention_layernorm", "mlp")


def splits(layer: Any) -> bool:
    """Whether a decoder layer has the parts `forward_at` computes."""
    return all(hasattr(layer, name) for name in PARTS)


def forward_at(layer: Any, hidden_states: Any, rows: Any, **kwargs: Any) -> Any:
    """The decoder layer's output at `rows`, indices into its positions flattened over the
    batch: [1, len(rows), hidden]. kwargs: what the model passes the layer, which passes them
    on to its attention."""
    sandwich = all(hasattr(layer, name) for name in FEED_FORWARD_NORMS)
    attended = layer.self_attn(hidden_states=layer.input_layernorm(hidden_states), **kwargs)[0]
    if sandwich:
        attended = layer.post_attention_layernorm(attended)
    hidden = (hidden_states + attended).flatten(0, 1).index_select(0, rows).unsqueeze(0)
    if sandwich:
        fed = layer.pre_feedforward_layernorm(hidden)
        return hidden + layer.post_feedforward_layernorm(layer.mlp(fed))
    return hidden + layer.mlp(layer.post_attention_layernorm(hidden))


class LastLayerRows:
    """While inside, and while `rows` is set (a LongTensor of positions flattened over the
    batch), the last decoder layer (and so the model's last hidden states) has those positions
    only, in that order. `compiled`: forward_at through torch.compile, as CompiledLayers does
    for whole layers."""

    def __init__(self, model: Any, compiled: bool) -> None:
        import torch

        self.layer = decoder_layers(model)[-1]
        self.at = (
            torch.compile(forward_at, dynamic=True, options=INDUCTOR_OPTIONS)
            if compiled
            else forward_at
        )
        self.rows: Any = None
        self._saved: Any = None

    def __enter__(self) -> "LastLayerRows":
        own = self.layer.forward  # a compiled layer's, when CompiledLayers went first
        self._saved = vars(self.layer).get("forward")

        def forward(hidden_states: Any, *args: Any, **kwargs: Any) -> Any:
            if self.rows is None or args:
                return own(hidden_states, *args, **kwargs)
            return self.at(self.layer, hidden_states, self.rows, **kwargs)

        self.layer.forward = forward
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is None:
            del self.layer.forward  # back to the class's forward
        else:
            self.layer.forward = self._saved

    def matches(self, base_model: Any, device: str, tolerance: float) -> bool:
        """Whether the model's last hidden states at some positions of a short input are the
        same with and without this (eager layers; up to `tolerance`)."""
        import torch

        ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1]], device=device)
        rows = torch.tensor([1, 4, 7, 10, 15], device=device)
        at, self.at = self.at, forward_at  # eager: the split is checked, not the compiler
        try:
            with torch.inference_mode():
                full = base_model(input_ids=ids).last_hidden_state.flatten(0, 1)[rows]
                with self:
                    self.rows = rows
                    part = base_model(input_ids=ids).last_hidden_state[0]
        except Exception:  # noqa: BLE001 (a layer that does not split this way)
            return False
        finally:
            self.rows, self.at = None, at
        return part.shape == full.shape and bool(
            torch.allclose(full.float(), part.float(), atol=tolerance, rtol=tolerance)
        )


def last_layer_rows(
    model: Any,
    compiled: bool,
    device: str,
    tolerance: float,
    verdict: Callable[[str, Callable[[], bool]], bool] = lambda question, work: work(),
) -> LastLayerRows | None:
    """LastLayerRows for `model` when its last decoder layer has the parts forward_at computes
    and the split gives the model's own numbers (`matches`, asked through `verdict`, which may
    answer from an earlier process), else None."""
    layers = decoder_layers(model)
    if not layers or not splits(layers[-1]):
        return None
    last = LastLayerRows(model, compiled)
    matches = verdict("last-layer-rows", lambda: last.matches(model.base_model, device, tolerance))
    return last if matches else None
