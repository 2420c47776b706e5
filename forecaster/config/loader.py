"""Reading the configuration file: YAML with unique keys, validated once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from forecaster.config.errors import ConfigError, describe_validation_error
from forecaster.config.schema import Config


def parse_config(data: Any, source: str = "<config>") -> Config:
    """Validate an already-parsed document; raise ConfigError naming source and key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with keys 'prometheus' and 'rules'")
    try:
        return Config.model_validate(data, context={"written": True})
    except ValidationError as err:
        raise ConfigError(describe_validation_error(source, err)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that repeats a key (YAML says keys are
    unique; PyYAML would silently keep the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if key in first:
                raise ConfigError(
                    f"line {line}: key {key!r} appears twice in one mapping (first at line "
                    f"{first[key]}); YAML keeps only one, so say it once"
                )
            first[key] = line
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path) -> Any:
    """One YAML document from a file, keys unique; raise ConfigError naming the file (and
    the line) when it cannot be read or parsed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not UTF-8 text: byte 0x{err.object[err.start]:02x} at line {line} "
            "(YAML files are UTF-8)"
        ) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.MarkedYAMLError as err:
        where = err.problem_mark or err.context_mark
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return data


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML configuration file; raise ConfigError on any problem."""
    return parse_config(read_yaml(path), str(path))
