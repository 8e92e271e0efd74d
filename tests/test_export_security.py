"""Nothing bitnas ships loads a pickle from disk: weights are safetensors, the packed model is an
npz read with allow_pickle=False, torch files are read with weights_only=True; the one reader of
pickled data (CIFAR-10's own batch format) uses a restricted unpickler that builds arrays only.
The MLflow UI binds to loopback unless told otherwise."""

from __future__ import annotations

import re
from pathlib import Path

from bitnas.search.ui import is_loopback, ui_command

REPO = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = ("bitnas", "search", "spaces", "evaluators", "export", "benchmarks")
RESTRICTED_UNPICKLER = "class _ArraysOnlyUnpickler(pickle.Unpickler)"


def source_files():
    for folder in SOURCE_FOLDERS:
        yield from (REPO / folder).rglob("*.py")


def test_no_unsafe_deserialisation_in_the_source():
    problems = []
    for path in source_files():
        text = path.read_text()
        for number, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0]
            where = f"{path.relative_to(REPO)}:{number}: {line.strip()}"
            if re.search(r"\btorch\.load\(", code) and "weights_only=True" not in code:
                problems.append(where)
            if re.search(r"\bnp\.load\(|\bnumpy\.load\(", code) and "allow_pickle=False" not in code:
                problems.append(where)
            if re.search(r"\b(pickle|cloudpickle|joblib|dill)\.loads?\(", code):
                problems.append(where)
            if re.search(r"\bpickle\.Unpickler\b", code) and RESTRICTED_UNPICKLER not in line:
                problems.append(where)
    assert not problems, "unsafe loads:\n" + "\n".join(problems)


def test_the_ui_binds_to_loopback_by_default(tmp_path):
    command = ui_command(tmp_path, "127.0.0.1", 5000)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
