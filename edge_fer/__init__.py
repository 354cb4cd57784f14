"""edge_fer: facial-emotion-recognition CNNs from training to measured edge deployment.

Pipeline (one subpackage per stage): ``data`` → ``models`` → ``training`` → ``calibration``
→ ``export`` → ``device_bench`` → ``report``; ``cli`` drives them all (``edgefer --help``).
"""

__version__ = "0.1.0"
