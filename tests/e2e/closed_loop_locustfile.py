"""Plain closed-loop Locust (one request at a time per user), the contrast in the coordinated-omission test."""

from locust import FastHttpUser, constant_pacing, task


class ClosedLoopUser(FastHttpUser):
    wait_time = constant_pacing(0.05)

    @task
    def predict(self):
        self.client.post("/predict", json={"domain": "legal", "text": "a lease"})
