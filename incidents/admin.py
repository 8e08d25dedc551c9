"""Admin of the incidents app."""
