"""Classroom engagement: windows over admitted signal frames, scored by the engagement model.

Only derived signals leave this package: class-level (k-anonymous) windows, per-student
windows where consent covers them, and alerts. See docs/engagement.md (and docs/classroom.md
for the whole feature).
"""
