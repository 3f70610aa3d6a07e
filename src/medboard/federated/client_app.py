"""The Flower ClientApp of the federated track: one site's LoRA training and evaluation.

A site is told who it is by its node config. In simulation Flower sets `partition-id` and
`num-partitions`, and the site loads its share of the static dataset through flwr-datasets. On
the deployment engine a hospital's SuperNode passes `--node-config "data-path='/its/file.jsonl'
site-id=3"`: the site then trains on its own file, which never leaves it.

Messages (Message API):
- query: replies with the site id, so the server can order and sample sites reproducibly;
- train: loads the global adapter, trains `train.local-steps` steps, replies with the adapter
  and `train_loss` (weighted by `num-examples`, the site's training examples);
- evaluate: loads the global adapter, replies with the loss on the site's held-out examples.
"""

from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from medboard.errors import ModelError
from medboard.federated.config import FlConfig
from medboard.federated.data import (
    check_dataset,
    load_partition,
    partition_spec,
    read_site_file,
    split_eval,
)
from medboard.federated.lora import (
    LoraSettings,
    TrainSettings,
    adapter_state,
    build_model,
    evaluate_loss,
    from_arrays,
    load_adapter_state,
    resolve_base_model,
    to_arrays,
    train_local,
)

app = ClientApp()


def site_id(context: Context) -> int:
    node = context.node_config
    for key in ("site-id", "partition-id"):
        if key in node:
            return int(node[key])
    return int(context.node_id)


def lora_settings(cfg: FlConfig) -> LoraSettings:
    return LoraSettings(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.target_modules)


def site_rows(cfg: FlConfig, context: Context) -> tuple[list[dict[str, str]], list]:
    """(train, held-out) instruction pairs of this site."""
    node = context.node_config
    if "data-path" in node:
        rows = read_site_file(Path(str(node["data-path"])).expanduser())
    else:
        static = cfg.static
        data_file = check_dataset(static.dataset, cfg.data_path, "")
        count = int(node.get("num-partitions", static.num_clients))
        spec = partition_spec(static, str(data_file) if data_file else "", count)
        rows = load_partition(spec, int(node["partition-id"]))
    return split_eval(rows, cfg.eval_examples)


def resolve_device(name: str) -> str:
    """The torch device of the run config's `device`, or one line saying why this site lacks it."""
    import torch

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(
            f"run config asks for device '{name}' but this site has no CUDA device "
            f'(torch {torch.__version__}); set device="cpu" or run the site on a GPU'
        )
    return name


def _prepare(msg: Message, context: Context) -> tuple[FlConfig, Any, Any]:
    import torch

    cfg = FlConfig.from_run_config(context.run_config)
    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    base = resolve_base_model(cfg.model)
    model, tokenizer = build_model(base.directory, lora_settings(cfg), cfg.seed)
    model.to(device)
    load_adapter_state(model, from_arrays(msg.content["arrays"]))
    return cfg, model, tokenizer


@app.query()
def query(msg: Message, context: Context) -> Message:
    content = RecordDict({"site": ConfigRecord({"site-id": site_id(context)})})
    return Message(content=content, reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    cfg, model, tokenizer = _prepare(msg, context)
    config = msg.content["config"]
    server_round = int(config["server-round"])
    site = site_id(context)
    train_rows, _ = site_rows(cfg, context)
    settings = TrainSettings(
        steps=cfg.local_steps,
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        max_seq_length=cfg.max_seq_length,
        proximal_mu=float(config.get("proximal-mu", 0.0)),
    )
    # One seed per (run, round, site): the same config trains the same adapter.
    seed = cfg.seed * 1_000_003 + server_round * 1009 + site
    metrics = train_local(model, tokenizer, train_rows, settings, seed)
    arrays: ArrayRecord = to_arrays(adapter_state(model))
    reply = RecordDict(
        {
            "arrays": arrays,
            "metrics": MetricRecord({**metrics, "num-examples": len(train_rows)}),
        }
    )
    return Message(content=reply, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    cfg, model, tokenizer = _prepare(msg, context)
    train_rows, held_out = site_rows(cfg, context)
    rows = held_out or train_rows[: cfg.eval_examples]
    loss = evaluate_loss(model, tokenizer, rows, cfg.max_seq_length, cfg.batch_size)
    metrics = MetricRecord({"eval_loss": loss, "num-examples": len(rows)})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
