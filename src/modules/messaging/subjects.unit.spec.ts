import { assertSubject, SubjectError, subjectMatches, Subjects } from './subjects';

describe('Subjects', () => {
  const subjects = new Subjects('runway');

  it('builds the subjects of docs/protocol.md under the prefix', () => {
    expect(subjects.dispatch('x86-8c')).toBe('runway.dispatch.x86-8c');
    expect(subjects.anyDispatch()).toBe('runway.dispatch.*');
    expect(subjects.runnerCancel('r-1')).toBe('runway.runners.r-1.cancel');
    expect(subjects.runnerControl('r-1')).toBe('runway.runners.r-1.control');
    expect(subjects.anyRunnerCancel()).toBe('runway.runners.*.cancel');
    expect(subjects.anyRunnerControl()).toBe('runway.runners.*.control');
    expect(subjects.heartbeat('r-1')).toBe('runway.heartbeats.r-1');
    expect(subjects.allHeartbeats()).toBe('runway.heartbeats.*');
    expect(subjects.jobEvent('o', 'p', 'j', 'JobClaimed')).toBe('runway.jobs.o.p.j.JobClaimed');
    expect(subjects.allJobEvents()).toBe('runway.jobs.>');
  });

  it('names the jobs stream after the prefix', () => {
    expect(subjects.jobsStreamName()).toBe('RUNWAY_JOBS');
    expect(new Subjects('acme.runway-staging').jobsStreamName()).toBe('ACME_RUNWAY_STAGING_JOBS');
    expect(new Subjects('a_b.C9').jobsStreamName()).toBe('A_B_C9_JOBS');
  });

  it('refuses tokens that would address another subject', () => {
    for (const bad of ['', 'a.b', '*', '>', 'a*', 'b>', 'a b', 'tab\t', 'nl\n']) {
      expect(() => subjects.dispatch(bad)).toThrow(SubjectError);
      expect(() => subjects.heartbeat(bad)).toThrow(SubjectError);
      expect(() => subjects.jobEvent('o', 'p', bad, 'JobClaimed')).toThrow(SubjectError);
    }
    expect(() => new Subjects('runway.')).toThrow(SubjectError);
    expect(() => new Subjects('run way')).toThrow(SubjectError);
    expect(() => new Subjects('runway.>')).toThrow(SubjectError);
  });
});

describe('subject matching', () => {
  it.each([
    ['a.b', 'a.b', true],
    ['a.b', 'a.c', false],
    ['a.b', 'a.b.c', false],
    ['a.*', 'a.b', true],
    ['a.*', 'a', false],
    ['a.*', 'a.b.c', false],
    ['*.b.*', 'a.b.c', true],
    ['a.>', 'a.b', true],
    ['a.>', 'a.b.c.d', true],
    ['a.>', 'a', false],
    ['>', 'a', true],
    ['a.*.>', 'a.b', false],
    ['a.*.>', 'a.b.c', true],
  ])('%s against %s: %s', (pattern, subject, expected) => {
    expect(subjectMatches(pattern, subject)).toBe(expected);
  });

  it('takes wildcards only where a subscription may use them', () => {
    expect(() => assertSubject('a.>', { wildcards: true })).not.toThrow();
    expect(() => assertSubject('a.*.c', { wildcards: true })).not.toThrow();
    expect(() => assertSubject('a.>.c', { wildcards: true })).toThrow(SubjectError);
    expect(() => assertSubject('a.*', { wildcards: false })).toThrow(SubjectError);
  });
});
