"""The federated fine-tuning track: a Flower app that fine-tunes LoRA adapters across sites.

- `config`: the run configuration (`[tool.flwr.app.config]`) and its static section, the part a
  leaderboard submission may not change.
- `data`: medical instruction pairs from the benchmark training splits, partitioned across
  sites with flwr-datasets (IID or Dirichlet).
- `lora`: the PEFT LoRA model, local training and evaluation, adapter export and checks.
- `comm`: the strategy wrapper that counts every ArrayRecord byte and enforces the budget.
- `server_app` / `client_app`: the Flower ServerApp and ClientApp (Message API).
- `launch`: runs `flwr run` against a SuperLink it starts and always stops.
- `submit`: evaluates the aggregated adapter and records the leaderboard entry.

Nothing heavy is imported here: torch, transformers and flwr load when a module needs them.
"""

TRACK = "flowertune_medical"
