"""The PEFT LoRA model of the federated track: build, train locally, evaluate, export, check.

Only the LoRA tensors travel between server and sites (`adapter_state` / `load_adapter_state`);
the base model stays where it is. Training is a plain loop (AdamW, no scheduler) with every
random draw seeded, so one config gives one adapter on CPU. The loss counts the response tokens
only: the prompt is context, as it is when the evaluation scores the answer.
"""

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from medboard.errors import MissingExtraError, ModelError

FL_MANIFEST = "medboard_fl.json"
IGNORE = -100


@dataclass(frozen=True)
class LoraSettings:
    r: int
    alpha: int
    dropout: float
    target_modules: tuple[str, ...]


@dataclass(frozen=True)
class BaseModel:
    """A base model as given (`spec`), the directory it loads from and its exact revision."""

    spec: str
    directory: str
    revision: str


_BASES: dict[str, BaseModel] = {}
_MODELS: dict[tuple[str, LoraSettings], tuple[Any, Any]] = {}


def resolve_base_model(spec: str) -> BaseModel:
    """A directory, a .gguf file (dequantized once, cached) or a Hub id, as medboard loads it:
    the track fine-tunes transformers models, whose folder the sites train from."""
    if spec in _BASES:
        return _BASES[spec]
    from medboard.backends import registry

    named = registry.resolve(str(Path(spec).expanduser()) if spec.endswith(".gguf") else spec)
    backend = registry.create(named)
    model_dir = getattr(backend, "model_dir", None)
    if model_dir is None:
        raise ModelError(
            f"the federated track fine-tunes transformers models: {spec} is a "
            f"'{named.backend}' model"
        )
    base = BaseModel(spec=spec, directory=str(model_dir()), revision=backend.identity()["revision"])
    _BASES[spec] = base
    return base


def build_model(directory: str, lora: LoraSettings, seed: int) -> tuple[Any, Any]:
    """(peft model, tokenizer) in float32 on CPU; cached per process, weights reset by callers."""
    key = (directory, lora)
    if key in _MODELS:
        return _MODELS[key]
    try:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise MissingExtraError(exc.name or "peft", "hf") from None
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    base = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(base, config)
    except ValueError as exc:
        raise ModelError(f"cannot put LoRA on {directory}: {exc}") from None
    _MODELS[key] = (model, tokenizer)
    return model, tokenizer


def adapter_state(model: Any) -> dict[str, Any]:
    """The LoRA tensors, named as PEFT saves them, detached copies."""
    from peft import get_peft_model_state_dict

    # On the CPU whatever device trained them: they travel as NumPy arrays.
    return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(model).items()}


def load_adapter_state(model: Any, state: dict[str, Any]) -> None:
    from peft import set_peft_model_state_dict

    expected = set(adapter_state(model))
    if set(state) != expected:
        missing = sorted(expected - set(state))[:1] or sorted(set(state) - expected)[:1]
        raise ModelError(f"adapter tensors do not match the model (first difference: {missing})")
    set_peft_model_state_dict(model, state)


def to_arrays(state: dict[str, Any]) -> Any:
    from flwr.app import ArrayRecord

    return ArrayRecord({k: v.contiguous() for k, v in state.items()})


def from_arrays(record: Any) -> dict[str, Any]:
    return dict(record.to_torch_state_dict())


def encode(tokenizer: Any, row: dict[str, str], max_len: int) -> tuple[list[int], list[int]]:
    """(input ids, labels): the prompt is cut from the left when too long, never the answer."""
    prompt = tokenizer(row["instruction"], add_special_tokens=False)["input_ids"]
    answer = tokenizer(row["response"], add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        answer = [*answer, tokenizer.eos_token_id]
    answer = answer[:max_len]
    room = max(0, max_len - len(answer))
    prompt = prompt[len(prompt) - room :] if room else []
    return prompt + answer, [IGNORE] * len(prompt) + answer


def collate(tokenizer: Any, rows: Sequence[dict[str, str]], max_len: int) -> dict[str, Any]:
    import torch

    encoded = [encode(tokenizer, row, max_len) for row in rows]
    width = max(len(ids) for ids, _ in encoded)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row_ids, row_labels) in enumerate(encoded):
        ids[i, : len(row_ids)] = torch.tensor(row_ids)
        labels[i, : len(row_labels)] = torch.tensor(row_labels)
        mask[i, : len(row_ids)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@dataclass(frozen=True)
class TrainSettings:
    steps: int
    batch_size: int
    learning_rate: float
    max_seq_length: int
    proximal_mu: float = 0.0


def train_local(
    model: Any,
    tokenizer: Any,
    rows: Sequence[dict[str, str]],
    settings: TrainSettings,
    seed: int,
) -> dict[str, float]:
    """Local steps of AdamW on the LoRA tensors; FedProx adds mu/2 * ||w - w_global||^2."""
    import torch

    if not rows:
        raise ModelError("this site has no training examples")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device
    anchor = [p.detach().clone() for p in params] if settings.proximal_mu > 0 else []
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=0.0)
    model.train()
    order = torch.randperm(len(rows), generator=generator).tolist()
    position, losses = 0, []
    for _ in range(settings.steps):
        batch = []
        for _ in range(settings.batch_size):
            if position == len(order):
                order, position = torch.randperm(len(rows), generator=generator).tolist(), 0
            batch.append(rows[order[position]])
            position += 1
        inputs = collate(tokenizer, batch, settings.max_seq_length)
        loss = model(**{k: v.to(device) for k, v in inputs.items()}).loss
        losses.append(float(loss.detach()))
        if anchor:
            drift = sum(((p - a) ** 2).sum() for p, a in zip(params, anchor, strict=True))
            loss = loss + settings.proximal_mu / 2 * drift
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    return {
        "train_loss": sum(losses) / len(losses),
        "train_loss_first": losses[0],
        "train_loss_last": losses[-1],
    }


def evaluate_loss(
    model: Any, tokenizer: Any, rows: Sequence[dict[str, str]], max_len: int, batch_size: int
) -> float:
    """Mean loss per response token over `rows`."""
    import torch

    total, tokens = 0.0, 0
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = collate(tokenizer, rows[start : start + batch_size], max_len)
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            logits = logits.logits[:, :-1].float()
            labels = batch["labels"][:, 1:]
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]),
                labels.reshape(-1),
                ignore_index=IGNORE,
                reduction="sum",
            )
            total += float(loss)
            tokens += int((labels != IGNORE).sum())
    return total / max(tokens, 1)


def export_adapter(
    base: BaseModel, lora: LoraSettings, state: dict[str, Any], out: Path, info: dict[str, Any]
) -> Path:
    """A PEFT adapter directory (safetensors) plus medboard_fl.json naming its base model."""
    model, _ = build_model(base.directory, lora, seed=0)
    load_adapter_state(model, state)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    config_path = out / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base.spec
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    manifest = {"base_model": asdict(base), "lora": asdict(lora), **info}
    (out / FL_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out


def tensor_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors of a safetensors model or adapter folder (headers only)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelError(f"{folder} holds no .safetensors weights")
    shapes: dict[str, tuple[int, ...]] = {}
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open is not a dict)
                shapes[name] = tuple(handle.get_slice(name).get_shape())
    return shapes


def check_adapter_fits(adapter: Path, base: BaseModel) -> None:
    """Refuse an adapter whose LoRA tensors do not fit the base model's layers, in one line."""
    manifest_path = adapter / FL_MANIFEST
    if manifest_path.is_file():
        recorded = json.loads(manifest_path.read_text(encoding="utf-8")).get("base_model", {})
        if recorded.get("revision") and recorded["revision"] != base.revision:
            raise ModelError(
                f"adapter {adapter} does not match base model {base.spec}: it was trained on "
                f"revision {recorded['revision'][:20]}, this base model is {base.revision[:20]}"
            )
    base_shapes = tensor_shapes(Path(base.directory))
    for name, shape in sorted(tensor_shapes(adapter).items()):
        if ".lora_A." not in name and ".lora_B." not in name:
            continue
        module = name.split(".lora_")[0].removeprefix("base_model.model.")
        weight = base_shapes.get(f"{module}.weight")
        if weight is None:
            raise ModelError(
                f"adapter {adapter} does not match base model {base.spec}: "
                f"it adapts '{module}', which the base model does not have"
            )
        out_features, in_features = weight[0], weight[-1]
        fits = shape[-1] == in_features if ".lora_A." in name else shape[0] == out_features
        if not fits:
            raise ModelError(
                f"adapter {adapter} does not match base model {base.spec}: '{module}' is "
                f"{out_features}x{in_features} in the base model, the adapter's "
                f"{name.split('.')[-2]} is {'x'.join(map(str, shape))}"
            )


def lora_bytes(shapes: dict[str, tuple[int, ...]], itemsize: int = 4) -> int:
    """The analytic size of LoRA tensors: elements times bytes per element."""
    total = 0
    for shape in shapes.values():
        count = 1
        for dim in shape:
            count *= dim
        total += count * itemsize
    return total
