"""Data sources configured by name, from the environment or the config file,
with their URLs (and passwords) kept out of repr and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from postroom.config import ConfigError, load_settings

PASSWORD = "Warehouse-Pw-5150"


def test_environment_names_data_source(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "POSTROOM_DATA_DIR": str(tmp_path),
            "POSTROOM_DATA_SOURCE_SALES": f"postgresql://reader:{PASSWORD}@db/sales",
        }
    )

    assert settings.data_sources == {
        "sales": f"postgresql://reader:{PASSWORD}@db/sales"
    }
    assert PASSWORD not in repr(settings)


def test_environment_wins_over_file(tmp_path: Path) -> None:
    config = tmp_path / "postroom.toml"
    config.write_text(
        '[data_sources]\nsales = "sqlite:////srv/old.db"\n'
        'archive = "sqlite:////srv/archive.db"\n'
    )

    settings = load_settings(
        {
            "POSTROOM_DATA_DIR": str(tmp_path),
            "POSTROOM_DATA_SOURCE_SALES": "sqlite:////srv/new.db",
        },
        config_file=config,
    )

    assert settings.data_sources == {
        "sales": "sqlite:////srv/new.db",
        "archive": "sqlite:////srv/archive.db",
    }


def test_invalid_name_says_where_to_fix(tmp_path: Path) -> None:
    config = tmp_path / "postroom.toml"
    config.write_text(
        f'[data_sources]\n"Sales-DB" = "postgresql://u:{PASSWORD}@db/x"\n'
    )

    with pytest.raises(ConfigError) as caught:
        load_settings({"POSTROOM_DATA_DIR": str(tmp_path)}, config_file=config)

    message = str(caught.value)
    assert "data source name 'Sales-DB' must be lower-case letters" in message
    assert "POSTROOM_DATA_SOURCE_<NAME> or the [data_sources] table" in message
    assert PASSWORD not in message
