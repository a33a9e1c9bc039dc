// Anchor for the CAF precompiled header target; intentionally empty.
