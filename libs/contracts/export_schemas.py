"""Write the JSON Schema of the envelope and of every event under a folder (default docs/events)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from contracts.envelope import Envelope
from contracts.events import EVENT_TYPES


def export(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    documents = {"Envelope": Envelope.model_json_schema()}
    for name, model in EVENT_TYPES.items():
        schema = model.model_json_schema(mode="serialization")
        schema["x-event-type"] = name
        schema["x-event-version"] = model.VERSION
        documents[f"{name}.v{model.VERSION}"] = schema
    for name, schema in documents.items():
        path = folder / f"{name}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/events")
    for path in export(target):
        print(path)
