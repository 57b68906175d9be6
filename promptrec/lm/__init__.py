"""The language model: the only layer that imports torch, transformers, peft, accelerate or bitsandbytes."""
