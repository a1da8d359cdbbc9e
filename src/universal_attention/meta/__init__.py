"""Meta-learning: Reptile and its tasks, the task sampler, the meta-training run and the start-point comparison."""
