/* mem: allocations that succeed behave as the C library's; one that cannot
 * be met logs one mem.oom line and aborts (checked in a child process). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"

/* Under AddressSanitizer an impossible allocation must come back NULL, as
 * from the C library, rather than stop in ASan's own report. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

static void test_allocations_that_succeed(void **state)
{
    (void)state;
    unsigned char *z = mem_calloc(16, 4);
    for (int i = 0; i < 64; i++)
        assert_int_equal(z[i], 0);
    z = mem_realloc(z, 128);
    z = mem_reallocarray(z, 8, 32);
    free(z);
    free(mem_malloc(10));
    char *s = mem_strdup("社保卡");
    assert_string_equal(s, "社保卡");
    free(s);
    s = mem_strndup("CX 1234", 2);
    assert_string_equal(s, "CX");
    free(s);
    s = mem_strndup("CX", 10);
    assert_string_equal(s, "CX");
    free(s);
}

/* Runs `fn` in a child whose log goes to a pipe; returns what it logged
 * and whether it died of SIGABRT. */
static bool child_aborts(void (*fn)(void), char *logged, size_t size)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        log_set_stream(fdopen(fds[1], "w"));
        fn();
        _exit(0);
    }
    close(fds[1]);
    size_t used = 0;
    ssize_t n;
    while (used + 1 < size && (n = read(fds[0], logged + used, size - 1 - used)) > 0)
        used += (size_t)n;
    logged[used] = '\0';
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

static void ask_too_much(void)
{
    /* n * size overflows: calloc refuses it without trying. */
    free(mem_calloc(SIZE_MAX / 2, 4));
}

static void ask_too_much_again(void)
{
    free(mem_reallocarray(NULL, SIZE_MAX / 2, 4));
}

static void test_out_of_memory_logs_and_aborts(void **state)
{
    (void)state;
    char logged[512];
    assert_true(child_aborts(ask_too_much, logged, sizeof logged));
    assert_non_null(strstr(logged, "level=error event=mem.oom what=calloc"));
    assert_true(child_aborts(ask_too_much_again, logged, sizeof logged));
    assert_non_null(strstr(logged, "event=mem.oom what=reallocarray"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allocations_that_succeed),
        cmocka_unit_test(test_out_of_memory_logs_and_aborts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
