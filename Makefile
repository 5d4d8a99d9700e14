# Convenience wrapper for people who type make; ./dev.sh is the real entry point
# (it also works on a fresh machine that has no make yet).
.PHONY: setup demo test bench train
setup demo test bench train:
	./dev.sh $@
