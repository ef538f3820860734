"""``tandem contracts check|install``: a site's instruments and clinic contracts.

Shipped definitions live in the ``data_contracts`` package; a site's own live in
``TANDEM_HOME/data_contracts/{instruments,clinics}/`` and are added to them (a site file
with the code of a shipped one replaces it). ``check`` validates a folder of them (the
site's by default) and says what it would change; ``install`` copies a checked folder
(e.g. the ``data_contracts/`` of ``tandem generate --out D``) into the site's.
"""

from __future__ import annotations

import filecmp
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tandem.app.clikit import (
    EXIT_FILES_FAILED,
    EXIT_USAGE,
    Failure,
    join_words,
    plural,
    typer_app,
)

if TYPE_CHECKING:
    from tandem.core.settings import Settings

KINDS = {"instruments": "instrument", "clinics": "clinic contract"}

contracts_app = typer_app(
    "Check and install instruments and clinic contracts.\n\nShipped definitions come with "
    "Tandem; a site's own live in $TANDEM_HOME/data_contracts/instruments/ and clinics/ "
    "and are added to them (a site file with the code of a shipped one replaces it).")


@dataclass
class Checked:
    """One folder of contracts, checked: what is valid, what is wrong, what would change."""

    folder: Path
    # kind -> code -> (path, parsed model)
    valid: dict[str, dict[str, tuple[Path, Any]]] = field(
        default_factory=lambda: {k: {} for k in KINDS})
    problems: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    # files that would replace an installed one with other content (install needs --force)
    replacing: list[Path] = field(default_factory=list)

    @property
    def files(self) -> int:
        return sum(len(v) for v in self.valid.values()) + len(self.problems)


def _layout(folder: Path) -> dict[str, list[Path]]:
    """The YAML files of a contracts folder by kind (``instruments/``, ``clinics/``)."""
    return {kind: sorted((folder / kind).glob("*.yaml")) if (folder / kind).is_dir() else []
            for kind in KINDS}


def check_folder(settings: Settings, folder: Path) -> Checked:
    """Validate every contract in ``folder`` and compare it with what is in effect."""
    from tandem.core.contracts import (
        ClinicContract,
        ContractError,
        Instrument,
        _validated,
        contract_sources,
        load_clinic_contracts,
        load_instruments,
    )

    checked = Checked(folder)
    models = {"instruments": (Instrument, "code"), "clinics": (ClinicContract, "clinic_id")}
    for kind, paths in _layout(folder).items():
        model, key = models[kind]
        for path in paths:
            rel = f"{kind}/{path.name}"
            try:
                parsed = _validated(model, path)
            except ContractError as exc:
                checked.problems += [f"{rel}: {p}" for p in exc.problems]
                continue
            code = getattr(parsed, key)
            if code != path.stem:
                checked.problems.append(
                    f"{rel}: its {key} is {code!r}, but the file is named {path.name}; name "
                    f"it {code}.yaml.")
                continue
            checked.valid[kind][code] = (path, parsed)

    site = settings.local_contracts_dir.resolve()
    is_site = folder.resolve() == site
    # The site's folder is compared with the shipped definitions; another folder with
    # what is in effect now (shipped and site), as installing it would change that.
    try:
        in_effect = {"instruments": load_instruments(settings, include_site=not is_site),
                     "clinics": load_clinic_contracts(settings, include_site=not is_site)}
        sources = contract_sources(settings, include_site=not is_site)
    except ContractError as exc:
        checked.problems.append(f"the site's {exc.path.parent.name}/{exc.path.name} is not "
                                f"valid ({' '.join(exc.problems)}); fix it first, see "
                                "`tandem contracts check`.")
        return checked
    instruments = {**in_effect["instruments"],
                   **{c: m for c, (_, m) in checked.valid["instruments"].items()}}
    for path, contract in checked.valid["clinics"].values():
        missing = [i for i in contract.instruments if i not in instruments]
        if missing:
            checked.problems.append(
                f"clinics/{path.name}: names {plural(len(missing), 'instrument')} that no "
                f"contract defines: {join_words(missing)}.")

    for kind, noun in KINDS.items():
        for code, (path, model) in sorted(checked.valid[kind].items()):
            defined = [p for p in sources[kind].get(code, []) if p.resolve() != path.resolve()]
            current = in_effect[kind].get(code)
            if is_site:
                shipped = defined
                if shipped:
                    checked.changes.append(f"{noun} {code}: the site's file replaces the "
                                           f"shipped one ({_differs(shipped[-1], model, kind)}).")
                else:
                    checked.changes.append(f"{noun} {code}: the site's own, in effect.")
                continue
            installed = site / kind / path.name
            if current is None:
                checked.changes.append(f"{noun} {code}: new.")
            elif current == model:
                checked.changes.append(f"{noun} {code}: unchanged.")
            else:
                checked.changes.append(f"{noun} {code}: would replace the one in effect "
                                       f"({_differs(defined[-1], model, kind)}).")
                if installed.exists() and not filecmp.cmp(installed, path, shallow=False):
                    checked.replacing.append(installed)
    return checked


def _differs(path: Path, new: Any, kind: str) -> str:
    """Which top-level fields differ between the file at ``path`` and ``new``."""
    from tandem.core.contracts import ClinicContract, Instrument

    model = Instrument if kind == "instruments" else ClinicContract
    try:
        old = model.model_validate(_read_yaml(path))
    except (OSError, ValueError):
        return "the one in effect cannot be read"
    fields = [f for f in type(new).model_fields if getattr(old, f) != getattr(new, f)]
    if not fields:
        return "same content"
    if len(fields) == 1:
        return f"field {fields[0]} differs"
    return f"fields {join_words(fields)} differ"


def _read_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _report(checked: Checked, header: str) -> None:
    typer.echo(header)
    for line in checked.changes:
        typer.echo(f"  {line}")
    if checked.problems:
        typer.echo(f"{plural(len(checked.problems), 'problem')} to fix:")
        for line in checked.problems:
            typer.echo(f"  {line}")


def _folder_arg(settings: Settings, folder: Path | None) -> Path:
    folder = folder or settings.local_contracts_dir
    if not folder.is_dir():
        raise typer.BadParameter(f"{folder} is not a folder.", param_hint="FOLDER")
    if folder.name in KINDS and not any(_layout(folder).values()):
        folder = folder.parent  # data_contracts/clinics given: the folder above it
    return folder


@contracts_app.command("check")
def check_command(
    folder: Annotated[Path | None, typer.Argument(
        help="A folder with instruments/ and clinics/ inside. Default: the site's, "
             "$TANDEM_HOME/data_contracts.", metavar="FOLDER", show_default=False)] = None,
) -> None:
    """Validate contracts and say what they change.

    For the site's folder: which shipped definitions its files replace. For another
    folder: what installing it would add or replace. Exit code 3 if a file is invalid.
    """
    from tandem.core.settings import get_settings

    settings = get_settings()
    folder = _folder_arg(settings, folder)
    checked = check_folder(settings, folder)
    if not checked.files:
        typer.echo(f"No contracts in {folder} (instruments/*.yaml, clinics/*.yaml).")
        return
    ok = plural(sum(len(v) for v in checked.valid.values()), "valid file")
    _report(checked, f"Checked {folder}: {ok}.")
    if checked.problems:
        raise typer.Exit(EXIT_FILES_FAILED)


def install_folder(settings: Settings, folder: Path, force: bool = False) -> Checked:
    """Check ``folder`` and copy its valid contracts into the site's folder. Raises
    :class:`Failure` when a file is invalid (exit 3) or would replace a different
    installed one without ``force`` (exit 2); then nothing is installed."""
    checked = check_folder(settings, folder)
    if checked.problems:
        raise Failure(f"{plural(len(checked.problems), 'problem')} in {folder}, nothing "
                      f"installed: {' '.join(checked.problems)}", EXIT_FILES_FAILED)
    if checked.replacing and not force:
        names = join_words(p.name for p in checked.replacing)
        raise Failure(f"{names} would replace installed contracts with other content; "
                      f"nothing installed. Check with `tandem contracts check {folder}`, "
                      "then install with --force to replace them.", EXIT_USAGE)
    for kind in KINDS:
        target = settings.local_contracts_dir / kind
        for _, (path, _) in sorted(checked.valid[kind].items()):
            target.mkdir(parents=True, exist_ok=True)
            tmp = target / f".{path.name}.tmp"
            shutil.copyfile(path, tmp)
            tmp.replace(target / path.name)
    return checked


@contracts_app.command("install")
def install_command(
    folder: Annotated[Path, typer.Argument(
        help="A folder with instruments/ and clinics/ inside, e.g. the data_contracts/ "
             "that tandem generate writes.", metavar="FOLDER", show_default=False)],
    force: Annotated[bool, typer.Option(
        "--force", help="Replace installed contracts whose content differs.")] = False,
) -> None:
    """Check contracts, then copy them into $TANDEM_HOME/data_contracts.

    Nothing is copied if a file is invalid (exit code 3) or would replace an installed
    one with other content without --force (exit code 2).
    """
    from tandem.core.settings import get_settings

    settings = get_settings()
    folder = _folder_arg(settings, folder)
    checked = install_folder(settings, folder, force)
    n = sum(len(v) for v in checked.valid.values())
    _report(checked, f"Installed {plural(n, 'contract')} from {folder} into "
                     f"{settings.local_contracts_dir}; the next ingest uses them.")
