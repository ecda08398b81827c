"""How a trial runs, apart from what it trains: a config's sections, each declared by its owner.

A section is a named group of options (``Option``: default, check, help): ``compute`` (how any executor
computes: device, threads, vmap, a replica's reservation; declared here) and each executor's own (``ray``:
actors, server processes, calls; declared with the executor, ``config/executors.py``, or by a plug-in's
``register_executor``). A config writes them nested::

    {"model": "resnet20", ..., "compute": {"device": "cuda", "gpus_per_actor": 0.25},
     "ray": {"num_actors": 32, "server_shards": 2}}

An option's name is unique among all sections' options, so the command lines address an option by its
name alone (``--set num_actors=8``, ``--num-actors 8``): ``section_of`` says where it goes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from dana_ray.core.checks import boolean, integer, number, one_of, optional
from dana_ray.core.registry import Option, Registry


class Section(dict):
    """One section of a config, its options resolved (defaults filled in); read as ``cfg.compute.device``
    or ``cfg.compute["device"]``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(frozen=True)
class SectionSpec:
    options: dict[str, Option]
    #: a check of the section against the whole config (``check(cfg)``, raising a one-line error), or None
    check: Callable[[Any], None] | None = None
    help: str = ""


#: The sections of a config, by name: ``compute`` and each executor's (``register_section``).
SECTIONS: Registry[SectionSpec] = Registry("config section")
#: Names a section and its options may not take: the config's own fields (``reserve``).
_reserved: set[str] = set()


def reserve(names: Iterable[str]) -> None:
    """Names no section nor section option may take (the config's fields), checked against the sections
    declared so far too."""
    _reserved.update(names)
    for name, spec in SECTIONS.items():
        _check_names(name, spec.options)


def _check_names(name: str, options: dict[str, Option]) -> None:
    clash = sorted(({name} | set(options)) & _reserved) or sorted(set(options) & {name, *SECTIONS})
    if clash:
        raise ValueError(f"section {name!r}: {clash[0]!r} is the name of a section or a config field")


def register_section(
    name: str, options: dict[str, Option], check: Callable[[Any], None] | None = None, help: str = ""
) -> SectionSpec:
    """Declare a config section and its options (an option's name is unique among every section's, so the
    command lines can address it by its name alone)."""
    for other, spec in SECTIONS.items():
        shared = sorted(set(spec.options) & set(options))
        if shared and other != name:
            raise ValueError(f"section {name!r}: option {shared[0]!r} is section {other!r}'s already")
    _check_names(name, options)
    if name in SECTIONS:
        return SECTIONS[name]  # a plug-in imported twice declares the same section
    return SECTIONS.register(name, SectionSpec(dict(options), check, help))


def section_of(option: str) -> str | None:
    """The section that declares ``option``, or None."""
    return next((name for name, spec in SECTIONS.items() if option in spec.options), None)


def check_nested(config: dict[str, Any]) -> None:
    """Refuse a section's option written at the top level of a config or grid ``trial:`` dict, naming the
    section it belongs in."""
    for key in config:
        owner = section_of(key) if key not in SECTIONS else None
        if owner is not None:
            raise ValueError(f"{key}: is an option of section {owner!r}; write it there: {owner}: {{{key}: ...}}")
        if key in SECTIONS and not isinstance(config[key], dict):
            raise ValueError(f"{key}: expected a mapping of its options, got {config[key]!r}")


def get_option(config: dict[str, Any], option: str) -> Any:
    """A section option's value in a config or grid ``trial:`` dict, or its default."""
    owner = section_of(option)
    if owner is None:
        raise ValueError(f"option: {option!r} is no section's")
    return (config.get(owner) or {}).get(option, SECTIONS[owner].options[option].default)


def given_options(config: dict[str, Any]) -> dict[str, Any]:
    """The section options a config or grid ``trial:`` dict sets, by name."""
    return {
        option: value
        for name, section in config.items()
        if name in SECTIONS and isinstance(section, dict)
        for option, value in section.items()
    }


def all_options(config: dict[str, Any]) -> dict[str, Any]:
    """Every section's options of a config or grid ``trial:`` dict, by name: as set, else the defaults."""
    given = given_options(config)
    return {
        option: given.get(option, spec.default)
        for _, section in SECTIONS.items()
        for option, spec in section.options.items()
    }


def set_options(config: dict[str, Any], values: dict[str, Any]) -> None:
    """Set section options (by name) in a config or grid ``trial:`` dict, in their sections, in place."""
    for option, value in values.items():
        owner = section_of(option)
        if owner is None:
            raise ValueError(f"option: {option!r} is no section's")
        config[owner] = dict(config.get(owner) or {}, **{option: value})


DEVICES = ("auto", "cpu", "cuda")

#: How any executor computes: a model replica's device, threads and reservation, the server's update.
COMPUTE_OPTIONS = {
    "device": Option("auto", one_of(*DEVICES), "auto: cuda when available, else cpu"),
    "eval_batch_size": Option(1000, integer(1), "examples per batch when evaluating"),
    "vmap_jobs": Option(
        1,
        integer(1),
        "up to this many ready gradient jobs a model replica computes together "
        "with torch.func.vmap (1: one by one); same numbers up to float rounding",
    ),
    "fused_updates": Option(
        False,
        boolean(),
        "each server update as one compiled pass (torch.compile); equal to "
        "the eager update up to float rounding; see algorithms/ops.py",
    ),
    "deterministic": Option(
        False,
        boolean(),
        "deterministic algorithms and no TF32 on a GPU (its numbers then repeat bitwise, at some speed); off: "
        "PyTorch's defaults (TF32 convolutions); CPU numbers repeat either way",
    ),
    "cpu_threads": Option(
        None,
        optional(integer(1)),
        "torch intra-op threads of a model replica (None: round(cpus_per_actor), at least 1, on actors and "
        "in the local executor's process alike); CPU results depend on it",
    ),
    "prefetch_batches": Option(
        2,
        integer(0),
        "batches of a file-decoded data set made ahead on a background "
        "thread while the model computes (0: none); never changes a number",
    ),
    "cpus_per_actor": Option(
        1.0, number(0.0), "CPUs reserved per model replica (a gradient actor; the local executor's trial process)"
    ),
    "gpus_per_actor": Option(0.0, number(0.0), "GPUs per model replica; fractions share a GPU"),
}

register_section("compute", COMPUTE_OPTIONS, help="how any executor computes")
