"""Hyperparameter search for Keras MLPs on MNIST: config, model, trainer, study driver."""
