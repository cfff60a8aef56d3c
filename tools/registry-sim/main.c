/* Placeholder until the daemon lands (see issue 2). */
int main(void) { return 0; }
