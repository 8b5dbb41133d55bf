app/sub/y.c
