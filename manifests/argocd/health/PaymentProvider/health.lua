-- Argo CD health of an Emporium PaymentProvider (emporium.dev/v1alpha1):
-- whether its Secret holds every key the provider type needs.
--   Progressing the operator has not yet checked this generation
--   Degraded    the Secret is missing or lacks a key (a person must fix it)
--   Healthy     the Ready condition holds
local hs = {}

local function condition(status, kind)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local status = obj.status
local generation = obj.metadata and obj.metadata.generation

local ready = condition(status, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to check the provider's Secret"
  return hs
end

if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end

if ready.status == "False" then
  hs.status = "Degraded"
  hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
  return hs
end

hs.status = "Progressing"
hs.message = ready.message or "The provider's readiness is not known yet"
return hs
