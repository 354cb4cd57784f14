"""Parameters and multiply-accumulates of every architecture at its default options (48×48×1),
so that ``edgefer models`` lists them at once, without building a model or importing TensorFlow.

After changing a builder, regenerate the table (tests/test_options_checked.py checks it against
the builders):

    python -m edge_fer.models.costs          # prints the measured table
    python -m edge_fer.models.costs --write  # and writes it into this file
"""

from __future__ import annotations

import sys
from pathlib import Path

# BEGIN COSTS (written by `python -m edge_fer.models.costs --write`)
COSTS = {
    "cnn": {"params": 1767207, "macs": 118040320},
    "resnet50": {"params": 23595783, "macs": 199608320},
    "vgg16": {"params": 14717127, "macs": 702041600},
    "mobilenetv3_small": {"params": 1536855, "macs": 3984776},
    "mobilenetv3_large": {"params": 4235111, "macs": 13985672},
    "ferlite": {"params": 247975, "macs": 26391808},
}
# END COSTS


def compute_costs(name: str) -> dict:
    """Build ``name`` at its defaults and count (slow: imports TensorFlow)."""
    from . import create_model, describe_model

    info = describe_model(create_model(name))
    return {"params": info["params"], "macs": info["macs"]}


def costs(name: str) -> dict | None:
    """The table's entry for ``name``, or None for an architecture registered after it was written."""
    return COSTS.get(name)


def main(argv: list[str]) -> None:
    from . import model_names

    table = {name: compute_costs(name) for name in model_names()}
    body = "COSTS = {\n" + "".join(f"    {n!r}: {{\"params\": {c['params']}, \"macs\": {c['macs']}}},\n"
                                   for n, c in table.items()).replace("'", '"') + "}\n"
    print(body, end="")
    if "--write" in argv:
        path = Path(__file__)
        text = path.read_text()
        head, rest = text.split("# BEGIN COSTS", 1)
        _, tail = rest.split("# END COSTS", 1)
        marker = "# BEGIN COSTS (written by `python -m edge_fer.models.costs --write`)\n"
        path.write_text(head + marker + body + "# END COSTS" + tail)
        print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
