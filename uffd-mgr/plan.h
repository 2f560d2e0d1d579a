/* plan: the host-wide memory planner, run from the daemon's control loop.
 *
 * Every second it samples each VM (the tracker's working set, its resident memory, the rate
 * of faults served from the tiers, and the guest's own statistics through the balloon's QMP
 * guest-stats) and feeds the VM's predictor (predictor/predict.h). Every PLAN_PERIOD_S, and
 * at once when a VM's sample is an emergency (tier faults, guest swap-ins or major faults
 * spiking, or a working set above its share), it re-plans: splits the host budget among the
 * VMs by predicted demand, critical amount, policy minimum and weight, and gives each VM
 *   - a resident target: the evictor keeps the VM at or under it (and under resident_max);
 *   - a balloon target, sent over QMP when it moved by more than 8 MiB ([balloon] enabled);
 *   - a prefetch: pages brought back from the tiers ahead of faults, most recently seen
 *     runs first, when demand is predicted to grow and the share allows ([prefetch]).
 * A VM takes part once its tracker has a full 10 s window (or at once without a tracker,
 * counting its resident memory as its working set); until then its resident memory is set
 * aside from the budget. Everything it decides shows in the VM's stats ("plan", built by
 * stats.c from vm->plan.ps).
 *
 * Functions return 0 or a negative errno. Not thread-safe: the control loop owns it. */
#ifndef UFFD_PLAN_H
#define UFFD_PLAN_H

#include <stddef.h>
#include <stdint.h>

struct vm;
struct planner;
struct json_object;

#define PLAN_PERIOD_S 5

/* A planner for budget bytes of host RAM (0: 80% of MemTotal). Returns 0 or -ENOMEM, or the
 * error of reading /proc/meminfo. */
int planner_create(uint64_t budget, struct planner **out);
void planner_destroy(struct planner *p); /* NULL ok */

uint64_t planner_budget(const struct planner *p);

/* Does what is due (samples, a re-plan) for the n VMs; returns milliseconds until the next
 * thing is due. May block on a VM's QMP socket for a short timeout. */
int planner_tick(struct planner *p, struct vm *const *vms, size_t n);

/* The daemon-wide figures for stats: budget, re-plans, emergencies, overcommit. */
struct json_object *planner_json(const struct planner *p);

#endif
