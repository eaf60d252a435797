"""The unlearning methods: one module per method, one registration each, one training function each.

A method is a function of a ``Context`` that trains ``ctx.lens.model`` in place and returns its log::

    from asru_lens import methods

    @methods.register("my_method", paper=False)
    def my_method(ctx):      # ctx: the lens, the forget and retain sets, lr, seed, the vanilla reference, ...
        ...

Registered methods run wherever the built-in ones do: ``asru-lens run --methods vanilla,my_method`` (with
``--plugin my_method.py``), ``asru-lens unlearn --method my_method``, ``methods.fit``. A package can also ship
methods through the entry-point group ``asru_lens.methods`` (each entry point names a module to import, whose
``register`` calls add them), as pytest plugins do.

``register`` takes:

==============  ================================================================================================
``paper``       whether the ASRU paper compares it (its rows are the paper's comparison and its claims)
``baseline``    one of the paper's unlearning baselines (the claim "asru leaks at most as much as the best
                baseline" reads these)
``config``      its config dataclass; ``ctx.settings(cls)`` builds it from the method's defaults, the model's
                presets (``presets``: the key in ``asru_lens.json``; default the method's name), the user's
                ``--set key=value`` and ``ctx.lr``. A config checks its own values when built.
``tuned``       whether its learning rate is picked on the run's grid by the validation rule (False: trains
                nothing, or at a fixed setting)
``after``       the method whose chosen weights it starts from (ASRU's stage 2 starts from stage 1)
``uses``        methods whose chosen learning rates it reads (the rewrite runs stage 2 at ASRU's)
``colour``      its colour in the figures (default: one from a palette, by registration order)
``finish``      ``fn(ctx)`` run once on the chosen weights after tuning (the rewrite's refusal stage)
==============  ================================================================================================
"""
from __future__ import annotations

from asru_lens.methods.registry import (ENTRY_POINT_GROUP, MODULES, ORDER, PALETTE, REGISTRY, Method,  # noqa: F401
                                        MethodError, chain, check, colour, get, load_entry_points, load_plugin, names,
                                        register)
from asru_lens.methods.context import Context, fit, settings_from  # noqa: E402,F401

__all__ = ["Context", "Method", "MethodError", "REGISTRY", "check", "chain", "colour", "fit", "get", "load_entry_points",
           "load_plugin", "names", "register", "settings_from", "ENTRY_POINT_GROUP", "MODULES", "ORDER", "PALETTE"]
