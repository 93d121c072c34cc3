// What the page knows, shared by its views. `selectedFile` changes only when the user picks a file
// or uploads one (never when the list is redrawn): the job runs on the image shown as chosen.
export const state = {
  files: [],
  apps: [],
  jobs: [],
  selectedFile: null,
  currentJob: null,
  listeners: [],
};

export function onJobs(fn) { state.listeners.push(fn); }

export function setJobs(jobs) {
  state.jobs = jobs;
  for (const fn of state.listeners) fn(jobs);
}

export const jobById = (id) => state.jobs.find((j) => j.job_id === id);

// Seconds a job has run: to now while it runs, else what the server recorded.
export function elapsed(job) {
  if (job.state === "RUNNING" && job.start_date) return (Date.now() - new Date(job.start_date).getTime()) / 1000;
  if (job.start_date && job.end_date) return (new Date(job.end_date) - new Date(job.start_date)) / 1000;
  return job.elapsed_time;
}
