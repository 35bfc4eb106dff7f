#define SV48
#include "paging.S"
