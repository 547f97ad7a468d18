"""deid_eval: scores any anonymizer (detection, re-identification, LFW TAR@FAR, FID/KID, k-NN)."""
