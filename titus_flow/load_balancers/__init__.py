"""Load balancer registration of service tasks (``load_balancers:`` on a service job).

:mod:`.rules` holds the pure decisions the job workflow applies (what to
register, what to deregister, what drifted); :mod:`.aws` the elbv2 calls the
activities and the submit-time check make.
"""
