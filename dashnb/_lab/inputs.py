"""The latency lab's settings as traits: validated as they are set, and named starting points.

    >>> from dashnb._lab.inputs import LabInputs
    >>> inputs = LabInputs(scenario="tls_1_2")
    >>> inputs.tls, inputs.scenario
    ('1.2', 'tls_1_2')
    >>> inputs.tls = "1.3"                      # changed by hand: no longer the scenario
    >>> inputs.scenario
    'custom'

``LabInputs`` is the settings half of ``dashnb._lab.model.LabModel`` (a traitlets class, no
widgets): the network, load and mode settings, and the pool settings under their ``PoolConfig``
names, validated by ``PoolConfig`` itself. ``scenario`` picks a named starting point from
``LAB_SCENARIOS`` (slow network, TLS 1.2, pool too small, long server time, then the assumed
networks of ``dashnb.SCENARIOS``): the defaults with the scenario's values on top; changing any
of those by hand makes it "custom" again. ``settings()`` freezes them into a ``LabSettings``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import traitlets
from traitlets import Bool, Enum, Float, HasTraits, Int, observe, validate

from .._config.pool import DEFAULT_POOL_CONFIG, PoolConfig
from .._modes.registry import check_modes
from ..emulator._options import TLS_CHOICES
from .settings import LAB_SCENARIOS, POOL_FIELDS, SETTINGS, LabSettings, pool_config

__all__ = ["CUSTOM", "LabInputs"]

_DEFAULTS = LabSettings()
#: The scenario of settings that follow no named starting point.
CUSTOM = "custom"


class LabInputs(HasTraits):
    """The lab's settings, one trait each; ``config`` and ``settings()`` read them as a whole."""

    rtt_ms = Float(_DEFAULTS.rtt_ms, help="emulated round trip, ms")
    ttfb_ms = Float(_DEFAULTS.ttfb_ms, help="emulated server time before the first byte, ms")
    tls = Enum(TLS_CHOICES, default_value=_DEFAULTS.tls, help="emulator TLS version, or off (plain HTTP)")
    scenario = Enum(
        (CUSTOM, *LAB_SCENARIOS),
        default_value=CUSTOM,
        help="a name from LAB_SCENARIOS (the lab's lessons and dashnb.SCENARIOS' assumed networks)",
    )
    # The Java SDK's settings under their PoolConfig names; PoolConfig validates them.
    connection_pool_size = Int(DEFAULT_POOL_CONFIG.connection_pool_size, help="Java connectionPoolSize")
    maximum_async_requests = Int(DEFAULT_POOL_CONFIG.maximum_async_requests, help="Java maximumAsyncRequests")
    maximum_async_requests_per_host = Int(
        DEFAULT_POOL_CONFIG.maximum_async_requests_per_host, help="Java maximumAsyncRequestsPerHost"
    )
    connect_timeout = Float(DEFAULT_POOL_CONFIG.connect_timeout, help="Java connectTimeout, seconds")
    read_timeout = Float(DEFAULT_POOL_CONFIG.read_timeout, help="Java readTimeout, seconds")
    connection_idle_timeout = Float(
        DEFAULT_POOL_CONFIG.connection_idle_timeout, help="Java connectionIdleTimeout, seconds"
    )
    concurrency = Int(_DEFAULTS.concurrency, help="threads / async calls in flight (concurrent modes)")
    calls = Int(_DEFAULTS.calls, help="measured calls per mode")
    modes = traitlets.Tuple(default_value=_DEFAULTS.modes, help="names from dashnb.MODES")
    side_by_side = Bool(_DEFAULTS.side_by_side, help="each mode on its own emulator, in parallel")

    # -- validation ------------------------------------------------------------------------

    @validate("rtt_ms", "ttfb_ms")
    def _check_ms(self, proposal):
        value = proposal["value"]
        if not 0 <= value <= 10_000:
            raise traitlets.TraitError(f"{proposal['trait'].name} must be between 0 and 10000 ms, got {value!r}")
        return value

    @validate("concurrency", "calls")
    def _check_count(self, proposal):
        value = proposal["value"]
        if value < 1:
            raise traitlets.TraitError(f"{proposal['trait'].name} must be at least 1, got {value!r}")
        return value

    @validate(*POOL_FIELDS)
    def _check_pool(self, proposal):
        name = proposal["trait"].name
        try:
            checked = pool_config(**{**self._pool_values(), name: proposal["value"]})
        except ValueError as exc:  # PoolConfig's own message: what is wrong and what to set
            raise traitlets.TraitError(str(exc)) from None
        return getattr(checked, name)

    @validate("modes")
    def _check_modes(self, proposal):
        modes = tuple(proposal["value"])
        try:
            return tuple(check_modes(modes)) if modes else ()
        except ValueError as exc:
            raise traitlets.TraitError(str(exc)) from None

    # -- settings --------------------------------------------------------------------------

    def _pool_values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in POOL_FIELDS}

    @property
    def config(self) -> PoolConfig:
        """The pool settings as a PoolConfig (what the measured sessions are built from)."""
        return pool_config(**self._pool_values())

    @config.setter
    def config(self, value: PoolConfig) -> None:
        if not isinstance(value, PoolConfig):
            raise traitlets.TraitError(f"config must be a dashnb.PoolConfig, got {type(value).__name__}")
        with self.hold_trait_notifications():  # one change (one re-measurement) for all fields
            for name in POOL_FIELDS:
                setattr(self, name, getattr(value, name))

    def settings(self) -> LabSettings:
        plain = {f.name: getattr(self, f.name) for f in dataclasses.fields(LabSettings) if f.name != "config"}
        return LabSettings(**plain, config=self.config)

    @observe("scenario")
    def _apply_scenario(self, change) -> None:
        preset = LAB_SCENARIOS.get(change["new"])
        if preset is not None:
            self._set_all(preset.settings())

    def _set_all(self, values: dict[str, Any]) -> None:
        # One notification burst (one re-measurement); the pool fields go in as one PoolConfig so
        # that no half-changed combination is validated on the way.
        pool = {name: values.pop(name) for name in POOL_FIELDS if name in values}
        with self.hold_trait_notifications():
            if pool:
                self.config = pool_config(**{**self._pool_values(), **pool})
            for name, value in values.items():
                setattr(self, name, value)

    @observe(*SETTINGS)
    def _leave_scenario(self, _change) -> None:
        preset = LAB_SCENARIOS.get(self.scenario)
        if preset is not None and any(getattr(self, k) != v for k, v in preset.settings().items()):
            self.scenario = CUSTOM

    @property
    def scenario_description(self) -> str:
        """What the chosen scenario shows ('' for custom settings)."""
        preset = LAB_SCENARIOS.get(self.scenario)
        return preset.description if preset is not None else ""
