"""Command-line options shared by ``decaf-segment`` and ``decaf-eval``: the reference's variants.

One home for their names, choices and help, so both tools spell them the same way; the values
are DecafConfig fields (docs/method.md §3.7 for the prompt versions, §13 item 11 for the backend).
"""
from __future__ import annotations

import argparse
from typing import Any

from .core.config import (IMAGE_PROCESSOR_BACKENDS, PROMPT_VERSION_FIELDS, SHARING_DOCS, SHARING_FIELDS,
                          VARIANT_DOCS, VARIANT_FIELDS, DecafConfig)
from .core.prompts import PROMPT_VERSIONS


def add_variant_options(parser: argparse.ArgumentParser) -> None:
    """Add --prompt-{object,choice,background}-version and --image-processor-backend (defaults: the paper's)."""
    defaults = DecafConfig()
    group = parser.add_argument_group("reference variants (defaults: the paper's main setting)")
    for name in PROMPT_VERSION_FIELDS:
        group.add_argument(_flag(name), type=int, choices=PROMPT_VERSIONS, default=getattr(defaults, name),
                           help=f"{VARIANT_DOCS[name]} (default: %(default)s)")
    group.add_argument(_flag("image_processor_backend"), choices=IMAGE_PROCESSOR_BACKENDS,
                       default=defaults.image_processor_backend,
                       help=f"{VARIANT_DOCS['image_processor_backend']} (default: %(default)s)")


def add_sharing_options(parser: argparse.ArgumentParser) -> None:
    """Add --[no-]share-prompt-prefix and --[no-]share-sam2-features (default on; off = the reference computation)."""
    defaults = DecafConfig()
    group = parser.add_argument_group("exact sharing (same results; off runs the reference computation literally)")
    for name in SHARING_FIELDS:
        group.add_argument(_flag(name), action=argparse.BooleanOptionalAction, default=getattr(defaults, name),
                           help=f"{SHARING_DOCS[name]} (default: %(default)s)")


def sharing_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The DecafConfig fields the options of :func:`add_sharing_options` set."""
    return {name: getattr(args, name) for name in SHARING_FIELDS}


def variant_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The DecafConfig fields the options of :func:`add_variant_options` set."""
    return {name: getattr(args, name) for name in VARIANT_FIELDS}


def _flag(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")
