-- Online quality (`keel report`, the dashboard's Experiments page) finds a window's
-- scores from the scores written since the window began: a score is written after its
-- call, so that range holds every score of the window's calls, and scores are a sample
-- of the traffic — far fewer rows than the window's traces, which the query would
-- otherwise walk one by one. (`scores_eval_created` leads with the eval: no help here.)
CREATE INDEX scores_created ON scores (created_at_ms);
