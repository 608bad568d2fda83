"""Training of the models the workers run; nothing here runs in a worker.

* :mod:`~splitee.training.train` - fine-tune a multi-exit CIFAR ResNet,
* :mod:`~splitee.training.train_backbone` - exits and classifier for a frozen registered backbone,
* :mod:`~splitee.training.noise_training` - retrain the cloud part on analog-channel features.

Nothing is imported here, so importing one module does not pull in the others.
"""
