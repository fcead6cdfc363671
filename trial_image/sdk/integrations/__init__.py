"""Callbacks that connect a training framework's own loop to the kubetune trial SDK.

``kubetune.trial.integrations.lightning`` (PyTorch Lightning) and
``kubetune.trial.integrations.transformers`` (Hugging Face Transformers' ``Trainer``) each import
their framework when they are imported, never before: ``import kubetune.trial`` needs neither
package, so a training image carries only the framework it uses.

Both do the same four things a plain SDK script does by hand (docs/trial-sdk.md): report each
epoch's metrics, save the framework's full training state through ``trial.save()`` (so it lands
in the Study's checkpoint storage and survives preemption), stop the framework's loop at the
segment's ``stop_at`` (holding there for a continue-in-place decision exactly like
``trial.steps()``), and apply the trial's hyperparameters to the restored optimizer (a PBT
exploit continues the donor's weights and optimizer state with the recipient's new values).
"""
