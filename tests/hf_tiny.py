"""A tiny real Hugging Face set-up for callback tests: a randomly initialised BERT built locally (no download)."""
from __future__ import annotations

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

FAIL_AT = 5  # FailingTrainer raises once this many optimiser steps are done


class Tokens(torch.utils.data.Dataset):
    """``n`` random token sequences of length 12, labelled by their first token."""

    def __init__(self, n: int = 96) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(1, 50, (n, 12), generator=g)
        self.y = (self.x[:, 0] > 25).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.x[i], "attention_mask": torch.ones(12, dtype=torch.long), "labels": self.y[i]}


class FailingTrainer(Trainer):
    """A user's Trainer whose loss computation raises once ``FAIL_AT`` optimiser steps are done."""

    error = RuntimeError("boom in compute_loss")

    def compute_loss(self, model, inputs, *args, **kwargs):
        if self.state.global_step >= FAIL_AT:
            raise self.error
        return super().compute_loss(model, inputs, *args, **kwargs)


class OutOfMemoryBert(BertForSequenceClassification):
    """The tiny BERT on a device that holds at most ``max_batch`` sequences: a larger batch runs out of memory
    (a ``RuntimeError`` with CUDA's message, which accelerate's ``find_executable_batch_size`` retries on) once
    ``oom_after`` forward passes have succeeded, as when a longer or larger batch comes later in training."""

    max_batch = 7
    oom_after = 6
    forwards = 0  # successful forward passes so far

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        if input_ids is not None and len(input_ids) > self.max_batch and self.forwards >= self.oom_after:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 139.81 GiB total capacity)")
        self.forwards += 1
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)


def tiny_trainer(out_dir, report_to, callbacks, cls=Trainer, samples: int = 96, config: dict | None = None,
                 model_cls=BertForSequenceClassification, **args) -> Trainer:
    """A Trainer of the tiny BERT on ``samples`` sequences; ``args`` override the TrainingArguments below."""
    torch.manual_seed(0)
    model = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, max_position_embeddings=16, num_labels=2, **(config or {}))
    kwargs = {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 2, "learning_rate": 1e-3,
              "logging_steps": 4, "use_cpu": True, "save_strategy": "no", "disable_tqdm": True,
              "dataloader_num_workers": 0, **args}
    return cls(model=model_cls(model), train_dataset=Tokens(samples), callbacks=callbacks,
               args=TrainingArguments(output_dir=str(out_dir), report_to=report_to, **kwargs))
