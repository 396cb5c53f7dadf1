"""clarena's demo: continual learning on scikit-learn's digits with finetuning, HAT and WSN, timed
on the native and the reference path. Run `clarena-demo --help` (or `python -m clarena --help`)."""
