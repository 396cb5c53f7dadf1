"""Stand-in of Mammoth's `models` package: the model registry (no argument inference)."""

from models.utils.continual_model import ContinualModel

REGISTERED_MODELS: dict = {}


def register_model(name: str):
    name = name.replace("_", "-").lower()

    def register(target):
        if name in REGISTERED_MODELS:
            raise ValueError(f"Name {name} already registered!")
        if not issubclass(target, ContinualModel):
            raise ValueError("The registered class must be a subclass of ContinualModel")
        REGISTERED_MODELS[name] = {"class": target, "parsable_args": {}}
        return target

    return register
