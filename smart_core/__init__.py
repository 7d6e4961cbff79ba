"""SMART reproduced: GRPO tuning of a piano REMI language model with an audio aesthetic reward."""

import os as _os

# No code path reaches a hub unless the user asks for a Hub model (model.load_pretrained checks).
_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

try:  # transformers' shard/weight progress bars drown the notebooks' own
    from transformers.utils import logging as _hf_logging

    _hf_logging.disable_progress_bar()
    _hf_logging.set_verbosity_error()
except ImportError:  # pragma: no cover
    pass

__version__ = "0.1.0"
