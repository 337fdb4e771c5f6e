"""The telemetry sources registered on a site, stored in its artifact bucket.

``sitemesh telemetry add NAME SOURCE`` checks a source (opens and reads it) and
stores its :class:`~sitemesh.sources.SourceSpec` as JSON under ``telemetry/<name>``
in the site's bucket (:class:`~sitemesh.bus.SiteArtifacts`), next to its knowledge
bases. The site's diagnostics workers read the spec from there when an alert names
the source (``TelemetryAlert.telemetry_source``) and reload it when it changes. Only
the spec is stored: the data stays where it is (a folder, a file, a Prometheus
server) and must be readable by the site's diagnostics workers.

One source is bundled: :data:`CISCO_SOURCE`, the packaged Cisco leaf7 capture that
the state-transition checks of the diagnostics agent run on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec

from ..errors import SitemeshError

if TYPE_CHECKING:
    from ..bus import ArtifactInfo, SiteArtifacts
    from ._protocol import SourceSummary
    from ._spec import SourceSpec

ARTIFACT_KIND: Final = "telemetry"
"""Artifacts ``telemetry/<name>`` hold the source specs."""

CISCO_SOURCE: Final = "cisco-leaf7"
"""The bundled source: the Cisco leaf7 model-driven-telemetry capture (CDLA-Permissive-1.0),
diagnosed by the state-transition checks, not by :func:`~sitemesh.sources.open_source`."""

BUNDLED_SOURCES: Final[dict[str, str]] = {
    CISCO_SOURCE: "packaged Cisco IOS-XR MDT capture of router leaf7 (2019-05-19, 10 s), "
    "state-transition and traffic checks",
}
"""Bundled source name -> description (``sitemesh telemetry list``)."""


class SourceNotFound(SitemeshError):
    """No telemetry source of that name is registered on the site."""

    def __init__(self, name: str, message: str | None = None) -> None:
        super().__init__(message or f"no telemetry source {name!r} is registered")
        self.name = name


def artifact_name(name: str) -> str:
    """``telemetry/<name>``: the artifact holding source ``name``'s spec."""
    return f"{ARTIFACT_KIND}/{name}"


async def publish_source(
    bucket: SiteArtifacts, spec: SourceSpec, summary: SourceSummary | None = None
) -> ArtifactInfo:
    """Store ``spec`` as ``telemetry/<spec.name>`` (replacing an earlier one).

    Args:
        bucket: the site's artifact bucket.
        spec: the checked spec.
        summary: what the check read (devices, series, lines), kept as metadata for
            ``telemetry list``.

    Returns:
        The stored artifact.

    Raises:
        SourceError: ``spec.name`` is a bundled source's name.
    """
    from ._errors import SourceError

    if spec.name in BUNDLED_SOURCES:
        raise SourceError(f"{spec.name!r} is a bundled source; choose another name", field="name")
    meta: dict[str, str] = {"kind": spec.kind}
    if summary is not None:
        meta |= {
            "devices": str(len(summary.devices)),
            "series": str(summary.series),
            "log_lines": str(summary.log_lines),
            "first": summary.first.isoformat() if summary.first else "",
            "last": summary.last.isoformat() if summary.last else "",
        }
    return await bucket.put(artifact_name(spec.name), msgspec.json.encode(spec), meta)


async def fetch_source(bucket: SiteArtifacts, name: str) -> SourceSpec:
    """The spec of site source ``name``.

    Raises:
        SourceNotFound: not registered.
        SourceError: the stored spec no longer parses (written by another version).
    """
    from ..bus import ArtifactNotFound
    from ._spec import parse_spec

    try:
        data, _ = await bucket.get(artifact_name(name))
    except ArtifactNotFound as exc:
        raise SourceNotFound(name, f"no telemetry source {name!r} at site {bucket.site}") from exc
    return parse_spec(data)


async def list_sources(bucket: SiteArtifacts) -> list[tuple[SourceSpec, dict[str, str]]]:
    """Every site source: its spec and the metadata stored with it, by name.

    Specs that no longer parse are skipped (``telemetry show`` names the error).
    """
    from ._errors import SourceError
    from ._spec import parse_spec

    out = []
    for info in await bucket.list(ARTIFACT_KIND):
        try:
            data, _ = await bucket.get(info.name)
            out.append((parse_spec(data), info.meta))
        except (SourceError, SitemeshError):
            continue
    return out


async def remove_source(bucket: SiteArtifacts, name: str) -> None:
    """Remove site source ``name``.

    Raises:
        SourceNotFound: not registered.
    """
    from ..bus import ArtifactNotFound

    try:
        await bucket.delete(artifact_name(name))
    except ArtifactNotFound as exc:
        raise SourceNotFound(name, f"no telemetry source {name!r} at site {bucket.site}") from exc
