"""A dbt Fusion manifest.json, made from one dbt-core wrote: the tests build a project with
dbt-core (Fusion cannot be installed here, and the models must exist in the warehouse), then
rewrite its manifest into the shape Fusion writes.

Where the shape comes from:
- dbt-labs/dbt-fusion, crates/dbt-schemas/src/schemas/manifest/ (commit 39a38d8c, May 2026):
  `manifest.rs` (`build_manifest`: metadata with dbt_schema_version v12, the Fusion version as
  dbt_version, project_id, adapter_type, quoting, no run_started_at), `v12.rs` (the top-level
  keys, `functions` included), `manifest_nodes.rs` (nodes and macros are
  `#[skip_serializing_none]`: `relation_name` (an ephemeral model has none), `patch_path`,
  `build_path`, `created_at`, `group`, `deprecation_date`, `time_spine`, `docs` are left
  out when unset; a model's
  `ManifestModelConfig` is not, so its unset options, `meta` among them, are written as
  null; `depends_on.nodes_with_ref_location`; a macro has `arguments` and no
  `supported_languages`); the disabled nodes are partial (a config of a few keys).
- A real Fusion manifest, 2.0.0-preview.218 (b-ned/dbt-colibri, tests/test_data/2.0/
  manifest.json, PR #138): `classifiers: []` on every node, `static_analysis`,
  `latest_version_pointer`, `on_error` and `quoting.snowflake_ignore_case` in config,
  `compiled_path` relative to the project.
- lightdash/lightdash#18088: Fusion writes `meta` as null.
- dbt-labs/dbt-fusion#462: early Fusion builds stamped schema v20 (`schema="v20"` here).

Beyond those, to prove what the reader must tolerate: `future_field` (a field no dbt-core
knows, on nodes and at the top level); `no_top_level_meta` models whose block is only in
`config.meta`; and Fusion's own copies of dbt's and the adapter's
macros (dbt-loader's `dbt_macro_assets`, annotated `-- funcsign:`) stubbed to fail, so a
sync that ran them instead of the installed adapter's would fail.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

FUSION_VERSION = "2.0.0-preview.218"
SCHEMA_V12 = "https://schemas.getdbt.com/dbt/manifest/v12.json"
INTERNAL_PACKAGES = ("dbt", "dbt_duckdb", "dbt_postgres")

# Keys dbt-core writes on a node that Fusion leaves out (None in Fusion's structs).
_CORE_ONLY = ("build_path", "created_at", "docs", "doc_blocks", "deprecation_date", "group",
              "time_spine", "patch_path", "config_call_dict", "unrendered_config_call_dict",
              "deferred")


def fusion_manifest(core: dict[str, Any], schema: str = "v12",
                    no_top_level_meta: Iterable[str] = ()) -> dict[str, Any]:
    """`core` (a dbt-core manifest) in the shape dbt Fusion writes; `no_top_level_meta`:
    model names whose block is left in `config.meta` only."""
    manifest = copy.deepcopy(core)
    bare = set(no_top_level_meta)
    metadata = manifest["metadata"]
    metadata.pop("run_started_at", None)
    metadata.update(
        dbt_schema_version=SCHEMA_V12.replace("v12", schema), dbt_version=FUSION_VERSION,
        user_id=None, send_anonymous_usage_stats=None,
        quoting={"database": True, "identifier": True, "schema": True},
    )
    for node in manifest["nodes"].values():
        _fusion_node(node)
        if node["name"] in bare:
            node.pop("meta", None)
    for macro in manifest["macros"].values():
        for key in ("created_at", "supported_languages", "patch_path"):
            macro.pop(key, None)
        macro.setdefault("arguments", [])
        if macro["package_name"] in INTERNAL_PACKAGES:
            macro["macro_sql"] = _stub(macro["name"])
    manifest.setdefault("functions", {})
    manifest["disabled"] = {"seed.fusion.disabled_seed": [{
        "unique_id": "seed.fusion.disabled_seed", "name": "disabled_seed",
        "resource_type": "seed", "package_name": "fusion", "fqn": ["fusion", "disabled_seed"],
        "path": "disabled_seed.csv", "original_file_path": "seeds/disabled_seed.csv",
        "classifiers": [], "meta": {}, "config": {"enabled": False, "static_analysis": "baseline",
                                                  "materialized": "seed"},
    }]}
    manifest["future_field"] = {"added_by": "a later Fusion build"}
    return manifest


def _fusion_node(node: dict[str, Any]) -> None:
    for key in _CORE_ONLY:
        node.pop(key, None)
    if node.get("relation_name") is None:
        node.pop("relation_name", None)
    node["classifiers"] = []
    node["future_field"] = None
    depends_on = node.setdefault("depends_on", {})
    depends_on["nodes_with_ref_location"] = [
        [uid, {"line": 1, "col": 15, "index": 14, "file": node["original_file_path"],
               "expanded": None}] for uid in depends_on.get("nodes", [])
    ]
    if node.get("compiled_path"):
        node["compiled_path"] = "target/compiled/" + node["compiled_path"].split("/compiled/")[-1]
    config = node["config"]
    config.update(on_error=None, static_analysis="baseline",
                  latest_version_pointer={"enabled": None, "alias": None})
    config["quoting"] = {"database": True, "identifier": True, "schema": True,
                         "snowflake_ignore_case": False}
    if not config.get("meta"):
        config["meta"] = None


def _stub(name: str) -> str:
    return (f"-- funcsign: () -> string\n{{% macro {name}() -%}}\n"
            f"  {{{{ exceptions.raise_compiler_error(\"Fusion's copy of {name} ran, not the "
            "installed adapter's\") }}\n{% endmacro %}")


def write_fusion_manifest(core_path: Path, out: Path, **options: Any) -> Path:
    """Rewrite the dbt-core manifest at `core_path` as Fusion's, at `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(fusion_manifest(json.loads(core_path.read_text()), **options)))
    return out
