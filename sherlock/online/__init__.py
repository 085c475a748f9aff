"""Stage III data: every pool question answered and corrected three times by M_{k-1}
(candidates), and the items whose three corrections agree kept as chosen (self-consistency, judged
by ``judge``).
"""
