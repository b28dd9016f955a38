"""The networks and their data: what is trained, on what, and how its layers are read.

* :mod:`~convergent.nets.registry`: architectures and datasets by name, built-in or import path;
* :mod:`~convergent.nets.archspec`, :mod:`~convergent.nets.dataspec`: names, layers, options and
  sizes without importing torch (planning reads them on every dry run);
* :mod:`~convergent.nets.models`: the built-in architectures and :class:`ImportedNet`, a user's
  network with named layers;
* :mod:`~convergent.nets.data`: the built-in datasets and datasets by import path, as tensors;
* :mod:`~convergent.nets.train`: deterministic, resumable training (freezing included);
* :mod:`~convergent.nets.extract`: layer activations into an activation store.
"""
