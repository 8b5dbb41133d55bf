dir2/i.c
