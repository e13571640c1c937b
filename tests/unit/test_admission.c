#include "unit.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "exec/admission.h"
#include "util/err.h"

/* One exec in a test: a thread that enters for `sub` and records when it got its slot. */
struct job {
    struct admission *a;
    const char *tenant, *sub;
    struct admission_owner *owner;
    int rc;
    int order; /* 1 + how many jobs were admitted before it (by the test's counter) */
    pthread_t th;
};

static pthread_mutex_t order_mu = PTHREAD_MUTEX_INITIALIZER;
static int admitted_so_far;

static void *job_main(void *arg)
{
    struct job *j = arg;
    j->rc = admission_enter(j->a, j->tenant, j->sub, &j->owner);
    pthread_mutex_lock(&order_mu);
    j->order = ++admitted_so_far;
    pthread_mutex_unlock(&order_mu);
    return NULL;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static struct admission_stats stats(struct admission *a)
{
    struct admission_stats s;
    admission_get_stats(a, &s);
    return s;
}

/* Waits (at most 5 s) until `waiting` execs are queued. */
static void wait_queued(struct admission *a, int64_t waiting)
{
    for (int i = 0; i < 5000 && stats(a).waiting != waiting; i++)
        sleep_ms(1);
    assert_int_equal(stats(a).waiting, waiting);
}

/* Starts a job that is expected to queue: returns once it waits. */
static void start_queued(struct job *j, struct admission *a, const char *sub)
{
    int64_t before = stats(a).waiting;
    *j = (struct job){.a = a, .tenant = "t", .sub = sub};
    assert_int_equal(pthread_create(&j->th, NULL, job_main, j), 0);
    wait_queued(a, before + 1);
}

static void join(struct job *j)
{
    assert_int_equal(pthread_join(j->th, NULL), 0);
    assert_int_equal(j->rc, 0);
}

static struct admission *make(int64_t concurrency, int64_t queue, int64_t owner_concurrency,
                              int64_t owner_queue)
{
    struct admission_limits lim = {concurrency, queue, owner_concurrency, owner_queue};
    struct admission *a = NULL;
    assert_int_equal(admission_new(&lim, &a), 0);
    admitted_so_far = 0;
    return a;
}

static struct admission_owner *enter_now(struct admission *a, const char *tenant, const char *sub)
{
    struct admission_owner *o = NULL;
    assert_int_equal(admission_enter(a, tenant, sub, &o), 0);
    return o;
}

/* One owner holds its cap and no more, even with slots free; another owner gets a free slot
 * at once; the capped owner's waiter runs when its own slot frees. */
static void test_owner_cap_leaves_room_for_others(void **state)
{
    (void)state;
    struct admission *a = make(2, 10, 1, 10);
    struct admission_owner *alice = enter_now(a, "t", "alice");
    struct job alice2;
    start_queued(&alice2, a, "alice"); /* a slot is free, but alice is at her cap */
    assert_int_equal(stats(a).running, 1);
    struct admission_owner *bob = enter_now(a, "t", "bob"); /* no wait */
    assert_int_equal(stats(a).running, 2);
    assert_int_equal(stats(a).owners, 2);
    admission_leave(a, bob); /* alice2 still waits: alice holds her one slot */
    sleep_ms(20);
    assert_int_equal(stats(a).waiting, 1);
    admission_leave(a, alice);
    join(&alice2);
    admission_leave(a, alice2.owner);
    struct admission_stats s = stats(a);
    assert_int_equal(s.running, 0);
    assert_int_equal(s.waiting, 0);
    assert_int_equal(s.owners, 0);
    admission_free(a);
}

/* A freed slot goes to the owner holding the fewest, ahead of older waiters of a busier owner;
 * among equals the oldest waiter goes first. */
static void test_fewest_slots_first_then_oldest(void **state)
{
    (void)state;
    struct admission *a = make(2, 10, 2, 10);
    struct admission_owner *a1 = enter_now(a, "t", "alice");
    struct admission_owner *a2 = enter_now(a, "t", "alice"); /* alone, alice uses both slots */
    struct job alice3, alice4, bob1, carol1;
    start_queued(&alice3, a, "alice");
    start_queued(&alice4, a, "alice");
    start_queued(&bob1, a, "bob");
    start_queued(&carol1, a, "carol");
    admission_leave(a, a1); /* alice holds 1, bob and carol 0: bob, the older of the two */
    join(&bob1);
    assert_int_equal(bob1.order, 1);
    admission_leave(a, a2); /* alice 0, carol 0, bob 1: alice3 and carol tie; alice3 is older */
    join(&alice3);
    assert_int_equal(alice3.order, 2);
    admission_leave(a, bob1.owner); /* alice 1, carol 0 */
    join(&carol1);
    assert_int_equal(carol1.order, 3);
    admission_leave(a, alice3.owner);
    join(&alice4);
    admission_leave(a, alice4.owner);
    admission_leave(a, carol1.owner);
    assert_int_equal(stats(a).running, 0);
    assert_int_equal(stats(a).owners, 0);
    admission_free(a);
}

/* EXEC_OWNER_QUEUE: an owner with that many waiting gets EBUSY naming the setting, while
 * another owner still queues; EXEC_QUEUE bounds everybody. */
static void test_owner_queue_and_queue_bounds(void **state)
{
    (void)state;
    struct admission *a = make(1, 3, 1, 2);
    struct admission_owner *alice = enter_now(a, "t", "alice");
    struct job q[3];
    start_queued(&q[0], a, "alice");
    start_queued(&q[1], a, "alice");
    struct admission_owner *o = NULL;
    err_clear();
    assert_int_equal(admission_enter(a, "t", "alice", &o), -ERR_BUSY);
    assert_non_null(strstr(err_message(), "this owner"));
    assert_int_equal(err_detail_count(), 1);
    assert_string_equal(err_detail_at(0), "EXEC_OWNER_QUEUE=2");
    start_queued(&q[2], a, "bob"); /* the queue still has room for others */
    err_clear();
    assert_int_equal(admission_enter(a, "t", "carol", &o), -ERR_BUSY); /* EXEC_QUEUE=3 */
    assert_non_null(strstr(err_message(), "1 running, 3 queued"));
    assert_int_equal(stats(a).owners, 2); /* carol's refusal left nothing behind */
    admission_leave(a, alice);            /* then alice, bob: ties at 0 slots go to the oldest */
    for (int i = 0; i < 3; i++) {
        join(&q[i]);
        assert_int_equal(q[i].order, i + 1);
        admission_leave(a, q[i].owner);
    }
    assert_int_equal(stats(a).running, 0);
    assert_int_equal(stats(a).waiting, 0);
    admission_free(a);
}

/* Owners are told apart by (tenant, sub), not by either alone nor by the joined text. */
static void test_owner_identity(void **state)
{
    (void)state;
    struct admission *a = make(5, 10, 1, 0);
    struct admission_owner *o1 = enter_now(a, "t1", "u");
    struct admission_owner *o2 = enter_now(a, "t2", "u");
    struct admission_owner *o3 = enter_now(a, "t1", "v");
    struct admission_owner *o4 = enter_now(a, "t1u", ""); /* same bytes as "t1" + "u" joined */
    assert_int_equal(stats(a).owners, 4);
    struct admission_owner *o = NULL;
    err_clear(); /* a slot is free, but (t1, u) is at its cap and may not queue */
    assert_int_equal(admission_enter(a, "t1", "u", &o), -ERR_BUSY);
    assert_string_equal(err_detail_at(0), "EXEC_OWNER_QUEUE=0");
    admission_leave(a, o1);
    admission_leave(a, o2);
    admission_leave(a, o3);
    admission_leave(a, o4);
    admission_free(a);
}

/* Idle owners are reused, and at most ADMISSION_IDLE_OWNERS of them are kept (ASan: no leak,
 * no use after free when the oldest are dropped). */
static void test_idle_owners_bounded(void **state)
{
    (void)state;
    struct admission *a = make(2, 0, 1, 0);
    char sub[32];
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 3 * ADMISSION_IDLE_OWNERS; i++) {
            snprintf(sub, sizeof(sub), "owner-%d", i);
            struct admission_owner *o = enter_now(a, "t", sub);
            struct admission_owner *again = enter_now(a, "t2", sub);
            admission_leave(a, o);
            assert_ptr_equal(enter_now(a, "t", sub), o); /* kept while idle: the same entry */
            admission_leave(a, o);
            admission_leave(a, again);
        }
    assert_int_equal(stats(a).owners, 0);
    admission_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_owner_cap_leaves_room_for_others),
        cmocka_unit_test(test_fewest_slots_first_then_oldest),
        cmocka_unit_test(test_owner_queue_and_queue_bounds),
        cmocka_unit_test(test_owner_identity),
        cmocka_unit_test(test_idle_owners_bounded),
    };
    return cmocka_run_group_tests_name("admission", tests, NULL, NULL);
}
