"""Transfer to a new task: the few-shot protocol, its results, statistics and report, finetuning, the linear probe."""
