"""evaluate(cfg): score one anonymizer on one dataset and write the run's result files.

`python evaluate.py model=blur9 data=demo metrics=faces k=1..10` runs the face suite;
`metrics=lfw` the LFW verification protocol; `metrics=bodies` silhouette k-NN on person
datasets. Each run folder gets results.json (every number with its protocol choices, dataset
size, software versions and weight sha256s), results.csv, tables.md, plots and samples.png.
A multirun over models (`-m model=original,blur9,...`) also merges the runs into one report.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from deid.anonymizers.base import Anonymizer
from deid.datasets.registry import build_dataset
from deid.errors import DeidError, unknown_name
from deid.hydra_entry import instantiate_unwrapped, run_dir_of
from deid.media import atomic_write
from deid_eval import paper_numbers, provenance
from deid_eval.cache import FeatureCache, cache_key, fingerprint_files
from deid_eval.pipelines.models import embedder_hashes, resolve_device
from deid_eval.ranges import parse_ks

SUITES = ("faces", "lfw", "bodies")


def build_anonymizer(cfg: DictConfig) -> Anonymizer:
    """The method `model=` picks (a conf/model/*.yaml: an anonymizer `_target_` + options)."""
    if cfg.get("model") is None or "_target_" not in cfg.model:
        raise DeidError("no method chosen: model=NAME (any conf/model/*.yaml)")
    return instantiate_unwrapped(cfg.model, "anonymizer")


def _data_options(cfg: DictConfig) -> tuple[dict[str, Any], str | None]:
    options = OmegaConf.to_container(cfg.data, resolve=True)
    assert isinstance(options, dict)
    eval_subset = options.pop("eval_subset", None)
    return options, eval_subset


def _face_records(cfg: DictConfig) -> tuple[list, dict[str, Any]]:
    options, eval_subset = _data_options(cfg)
    records = build_dataset({**options, "eval_subset": eval_subset}, for_evaluation=True)
    if cfg.get("limit"):
        records = records[: int(cfg.limit)]
    if not records:
        raise DeidError(f"dataset {options['name']!r} at {options['root']}: no images to evaluate")
    info = {
        "name": options["name"],
        "root": str(options["root"]),
        "split": eval_subset or options.get("split"),  # the part that was evaluated
        "reader_split": options.get("split"),
        "images": len(records),
        "identities": len({r.identity for r in records}),
    }
    return records, info


def _embedder_specs(cfg: DictConfig) -> dict[str, Any]:
    """Trained embedders by name (evaluate.yaml's `embedder:`), each a `_target_` spec."""
    specs = OmegaConf.to_container(cfg.get("embedder") or {}, resolve=True)
    assert isinstance(specs, dict)
    return {str(name): spec for name, spec in specs.items() if spec}


def _run_faces(cfg: DictConfig, anonymizer: Anonymizer, run_dir: Path, cache: FeatureCache):
    from deid_eval.pipelines.faces import FaceEvalSetup, evaluate_faces

    records, info = _face_records(cfg)
    metrics = cfg.metrics
    setup = FaceEvalSetup(
        records=records,
        anonymizer=anonymizer,
        box_detector=dict(OmegaConf.to_container(cfg.detector, resolve=True)),
        detectors=[dict(d) for d in OmegaConf.to_container(metrics.detectors, resolve=True)],
        embedders=list(metrics.embedders),
        ks=parse_ks(cfg.k),
        seed=int(cfg.seed),
        batch_size=int(cfg.batch_size),
        fid=bool(metrics.fid),
        kid=bool(metrics.kid),
        kid_subsets=int(metrics.kid_subsets),
        kid_subset_size=int(metrics.kid_subset_size),
        samples=int(metrics.samples),
        cache=cache,
        dataset_key=fingerprint_files([r.path for r in records]),
        run_dir=run_dir,
        device=resolve_device(cfg.get("device")),
        align=str(metrics.get("align", "none")),
        embedder_specs=_embedder_specs(cfg),
    )
    outcome = evaluate_faces(setup)
    info.update(outcome["counts"])
    weights = [w for d in setup.detectors for w in provenance.DETECTOR_WEIGHTS[d["name"]]]
    weights += provenance.DETECTOR_WEIGHTS[setup.box_detector["name"]] + ["dlib_landmarks68"]
    weights += [w for e in setup.embedders for w in provenance.EMBEDDER_WEIGHTS.get(e, [])]
    if setup.fid or setup.kid:
        weights.append("fid_inception")
    protocol = {
        "box_detector": setup.box_detector,
        "evaluated_face": "centre-weighted: max area - 2 * |centre offset|^2 (protocols.md 1.4)",
        "excluded": "images whose original has no face from the box detector",
        "query_embedding": "anonymized image embedded at the original face box",
        "gallery": "originals of the evaluated images; the query's own source removed for recall",
        "detection": "rate over images whose original the same detector found (protocols.md 6)",
        "align": setup.align,
        "fid_inputs": "the scored images (whole photos, or CIAGAN crops with align=ciagan), "
        "area-resized to 299, then pytorch-fid's bilinear resize",
        "ks": setup.ks,
        "seed": setup.seed,
        "device": setup.device,
    }
    trained = {e: setup.embedder_specs[e] for e in setup.embedders if e in setup.embedder_specs}
    if trained:  # which checkpoint each trained embedder came from
        protocol["trained_embedders"] = {
            name: {"ckpt": spec.get("ckpt"), **embedder_hashes(name, setup.embedder_specs)}
            for name, spec in trained.items()
        }
    return outcome["metrics"], info, protocol, weights


def evaluate(cfg: DictConfig, run_dir: Path | None = None) -> dict[str, Any]:
    """Score `cfg.model`'s anonymizer on `cfg.data` with suite `cfg.metrics`; returns results.

    The method is named by the anonymizer (a trained one by its checkpoint's experiment, so
    ablations get their own rows) and labelled as the papers name it (`paper_numbers`)."""
    suite = cfg.metrics.name
    if suite not in SUITES:
        raise unknown_name("metrics suite", suite, SUITES)
    parse_ks(cfg.k)  # a malformed k stops before any work
    run_dir = Path(run_dir) if run_dir is not None else run_dir_of(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = cfg.copy()  # resolvable outside Hydra too (tests call evaluate directly)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    anonymizer = build_anonymizer(cfg)
    cache = FeatureCache(Path(cfg.paths.cache_dir) / "eval", enabled=bool(cfg.cache))
    started = time.perf_counter()
    if suite == "faces":
        metrics, dataset, protocol, weight_names = _run_faces(cfg, anonymizer, run_dir, cache)
    elif suite == "lfw":
        from deid_eval.pipelines.lfw import run_lfw

        metrics, dataset, protocol, weight_names = run_lfw(cfg, anonymizer, run_dir, cache)
    else:
        from deid_eval.pipelines.persons import run_bodies

        metrics, dataset, protocol, weight_names = run_bodies(cfg, anonymizer, run_dir, cache)
    results = {
        "method": anonymizer.name,
        "method_label": paper_numbers.method_label(anonymizer.name),
        "suite": suite,
        "dataset": dataset,
        "metrics": metrics,
        "protocol": protocol,
        "software": provenance.software_versions(),
        "weights": provenance.weight_hashes(weight_names),
        "cache": {"hits": sorted(set(cache.hits)), "computed": sorted(set(cache.misses))},
        "seconds": round(time.perf_counter() - started, 2),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "run_key": cache_key(config=OmegaConf.to_container(cfg, resolve=True)),
    }
    with atomic_write(run_dir / "results.json") as handle:
        json.dump(results, handle, indent=2)
    from deid_eval.report import write_run_outputs

    written = write_run_outputs(run_dir, results)
    tables = Path(written.get("tables.md", run_dir / "tables.md"))
    if tables.is_file():
        print(tables.read_text())
    print(f"results: {run_dir / 'results.json'} (tables, CSV, plots and samples beside it)")
    return results
