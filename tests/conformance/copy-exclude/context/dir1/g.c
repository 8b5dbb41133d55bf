dir1/g.c
