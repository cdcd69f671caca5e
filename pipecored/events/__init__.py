"""Events to the tenant's platform (SPEC section 8): what they are, how one is posted, and when a
failed post is tried again. The outbox that stores them and the worker that posts them build on
these modules."""
