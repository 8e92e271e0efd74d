"""`--register NAME`: the exported folder becomes a version of a registered model in the MLflow
model registry, with the model card as its description. The files are logged as artefacts of the
trial's own run (under `export/`), so the version points at the run that trained the network."""

from __future__ import annotations

from pathlib import Path

from bitnas.errors import UserError

MAX_DESCRIPTION = 50_000  # MLflow stores descriptions as text; a card is a few KB


class RegistryError(UserError):
    """A registration that cannot be made; the message says why."""


def register_export(client, run_id: str, folder: Path, name: str, *, tags: dict[str, str]) -> str:
    """Register `folder` (an export) under `name`; returns the new version number."""
    from mlflow.exceptions import MlflowException

    card = (folder / "README.md").read_text()[:MAX_DESCRIPTION]
    artifact_path = f"export/{folder.name}"
    try:
        client.log_artifacts(run_id, str(folder), artifact_path)
        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(name, description=card)
        source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{artifact_path}"
        version = client.create_model_version(name, source, run_id=run_id, description=card, tags=tags)
        # The registered model shows the card of its latest version.
        client.update_registered_model(name, description=card)
    except MlflowException as error:
        raise RegistryError(f"--register {name}: MLflow refused: {error.message.splitlines()[0]}") from None
    return str(version.version)
